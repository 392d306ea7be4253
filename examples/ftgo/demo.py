"""The FTGO demo run: start the system with ``seawall up``, drive orders, break things.

:func:`run` starts the broker and the nine service processes of
``seawall.toml`` (in a fresh state directory), revises the menus, publishes a
malformed ticket command (the Kitchen dead-letters it), places the orders
``concurrency`` at a time from a client process, and meanwhile injects faults:
a Kitchen process is killed with SIGKILL a third of the way through (the
supervisor starts it again), a menu is revised mid-run, Accounting declines a
share of the cards, and every service is restarted rolling while the orders
flow (``seawall restart --rolling`` through the control socket of
:mod:`seawall._up.control`: each instance drained and started again, one
after another). Then it waits for the asynchronous follow-ups (courier
assignments), and audits the facts the services recorded in their own files
(:mod:`examples.ftgo.audit`). As ``seawall up --metrics`` does, it serves one
``/metrics`` for all nine processes; at the end it scrapes it over HTTP, and
the audit checks that the counts there equal what the services reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from seawall import (
    Context,
    Message,
    RequestError,
    RestartIntensity,
    ServiceError,
    Subscription,
    System,
    dead_letter_channel,
    uuid7,
)
from seawall._up.config import EMBEDDED, load_up_config
from seawall._up.control import Control, ask
from seawall._up.metrics import UpSource
from seawall._up.processes import Up
from seawall.observability.http import Probes

from . import storefront
from .audit import Facts, Summary
from .messages import CreateOrder, ReviseMenu

CONFIG = Path(__file__).resolve().parent / "seawall.toml"
CONCURRENCY = 50
ORDER_TIMEOUT = 30.0
SETTLE_TIMEOUT = 20.0
MENUS = {
    "r-0": {"ramen": 1250, "gyoza": 650, "edamame": 450},
    "r-1": {"pho": 1350, "banh-mi": 900, "spring-rolls": 600},
    "r-2": {"tacos": 1100, "burrito": 1200, "churros": 500},
}


def order(n: int) -> CreateOrder:
    """Order number ``n``; consumer ``c-13`` is blocked, every 97th asks for an unknown dish."""
    restaurant = f"r-{n % 3}"
    dishes = list(MENUS[restaurant])
    items = [dishes[n % 3], dishes[(n // 3) % 3]]
    if n % 97 == 5:
        items.append("unicorn")
    return CreateOrder(
        order_id=f"o-{n:05d}",
        consumer_id=f"c-{n % 50}",
        restaurant_id=restaurant,
        items=items,
        card=f"4242-{n:04d}",
    )


def malformed() -> Message:
    """A ticket command with a truncated body, as a buggy producer might send."""
    return Message(
        id=uuid7(),
        type="kitchen.CreateTicket",
        source="saboteur",
        kind="command",
        data=b'{"order_id": "o-x", "restaurant',
    )


@dataclasses.dataclass
class Faults:
    """When to inject what, as a share of the orders done."""

    kill_at: float = 0.3
    revise_at: float = 0.5
    order_timeout: float = ORDER_TIMEOUT
    killed: list[str] = dataclasses.field(default_factory=list)
    revised: bool = False


async def run(
    orders: int,
    *,
    concurrency: int = CONCURRENCY,
    transport: str = EMBEDDED,
    state: Path | None = None,
    tick: Callable[[], None] = lambda: None,
    prefix: str | None = None,
    env: Mapping[str, str] | None = None,
    intensity: RestartIntensity | None = None,
    order_timeout: float = ORDER_TIMEOUT,
    rolling: bool = True,
) -> Summary:
    """Run the whole demo; the summary holds what happened and what the audit found.

    On a shared broker every channel name starts with ``prefix`` (by default one of
    this run's own), and the run deletes its streams when it ends. ``env`` adds to the
    services' environment (``FTGO_CRASH_AT``, say) and ``intensity`` replaces the
    supervisor's restart limits of ``seawall.toml``; ``order_timeout`` is how long the
    client waits for each order's outcome. ``rolling=False`` leaves out the rolling
    restart of every service (short runs whose point is elsewhere: it takes about 10 s).
    """
    with contextlib.ExitStack() as stack:
        if state is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ftgo-")))
        if prefix is None:
            prefix = "" if transport == EMBEDDED else f"ftgo{uuid.uuid4().hex[:8]}-"
        config = load_up_config(CONFIG)
        config = dataclasses.replace(
            config,
            transport=transport,
            state=state,
            env={
                **config.env,
                **(env or {}),
                "FTGO_PREFIX": prefix,
                "FTGO_STATE": str(state / "ftgo"),
            },
            intensity=intensity or config.intensity,
        )
        summary = Summary(orders=orders, transport=transport, prefix=prefix, rolling=rolling)
        try:
            log_level = os.environ.get("SEAWALL_LOG_LEVEL", "WARNING")
            up = Up(config, id_prefix=prefix, log_level=log_level, metrics=True)
            async with Probes(UpSource(up)) as probes, up, Control(up):
                await up.wait_ready()
                await _drive_system(up, summary, concurrency, tick, order_timeout)
                summary.scraped = await scrape(f"{probes.url}/metrics")  # reads the reports
                summary.restarts = {i.name: i.restarts for i in up.instances}
                summary.handled = sum(i.total("handled") for i in up.instances)
                summary.retried = sum(i.total("retried") for i in up.instances)
                summary.dead_lettered = sum(i.total("dead_lettered") for i in up.instances)
        finally:
            if prefix:
                await delete_streams(transport, prefix)
        summary.facts = Facts.read(state / "ftgo")
        return summary


async def scrape(url: str) -> dict[str, int]:
    """``seawall_messages_total`` by outcome, over every process, from a real HTTP scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()

    totals: dict[str, int] = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(get)):
        for sample in family.samples:
            if sample.name == "seawall_messages_total":
                outcome = sample.labels["outcome"]
                totals[outcome] = totals.get(outcome, 0) + int(sample.value)
    return totals


async def _drive_system(
    up: Up, summary: Summary, concurrency: int, tick: Callable[[], None], order_timeout: float
) -> None:
    prefix = summary.prefix
    instance = f"{prefix}storefront-{uuid7()}"
    async with System(transport=up.transport_url, instance=instance) as client:
        ctx = client.context("storefront")
        transport = client.transport
        dlq = await transport.subscribe(dead_letter_channel(f"{prefix}kitchen"), group="audit")
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(_collect(dlq, summary.dead_letters))
            for restaurant, prices in MENUS.items():
                await ctx.send(
                    f"{prefix}restaurant", ReviseMenu(restaurant_id=restaurant, prices=prices)
                )
            await transport.publish(f"{prefix}kitchen", malformed())
            await _dead_letter_counted(up, summary)
            faults = Faults(order_timeout=order_timeout)
            started = time.perf_counter()
            # orders go over HTTP, through the storefront gateway (examples/ftgo/storefront.py)
            async with storefront.opened(client, prefix) as http:
                await _place_orders(ctx, http, up, summary, concurrency, faults, tick)
            summary.seconds = time.perf_counter() - started
            summary.killed = faults.killed
            await _settle(up, summary)
            reader.cancel()


async def _place_orders(
    ctx: Context,
    http: httpx.AsyncClient,
    up: Up,
    summary: Summary,
    concurrency: int,
    faults: Faults,
    tick: Callable[[], None],
) -> None:
    numbers = iter(range(summary.orders))  # shared: each order is taken by one worker
    done = 0
    prefix = summary.prefix

    async def worker() -> None:
        nonlocal done
        for n in numbers:
            placed, start = order(n), time.perf_counter()
            try:
                # POST /orders?expand=consumer
                outcome = await storefront.place(http, placed, faults.order_timeout)
            except (RequestError, storefront.Refused, httpx.HTTPError) as exc:
                summary.errors.append(f"{placed.order_id}: {type(exc).__name__}: {exc}")
            else:
                summary.outcomes[outcome.order_id] = outcome
                summary.latencies.append(time.perf_counter() - start)
            done += 1
            tick()
            await _inject(ctx, up, faults, done / summary.orders, prefix)

    async with asyncio.TaskGroup() as tasks:
        if summary.rolling:
            tasks.create_task(_roll(up, summary))
        for _ in range(min(concurrency, summary.orders)):
            tasks.create_task(worker())


async def _roll(up: Up, summary: Summary) -> None:
    """Restart every service rolling, as ``seawall restart --rolling`` asks it."""
    started = time.perf_counter()
    try:
        summary.rolled = await ask(up.config.state_dir, {"command": "restart", "service": None})
    except ServiceError as exc:
        summary.roll_error = str(exc)
    summary.roll_seconds = time.perf_counter() - started


async def _inject(ctx: Context, up: Up, faults: Faults, progress: float, prefix: str) -> None:
    if progress >= faults.kill_at and not faults.killed:
        # the busiest Kitchen: on NATS, the one holding the partition everyone else waits for
        kitchens = [i for i in up.refresh() if i.service == "kitchen" and i.state == "running"]
        victim = max(kitchens, key=lambda i: i.report.handled if i.report else -1)
        if victim.pid is not None:
            faults.killed.append(f"{victim.name} (pid {victim.pid})")
            os.kill(victim.pid, signal.SIGKILL)
    if progress >= faults.revise_at and not faults.revised:
        faults.revised = True
        dearer = {dish: cents + 100 for dish, cents in MENUS["r-0"].items()}
        await ctx.send(f"{prefix}restaurant", ReviseMenu(restaurant_id="r-0", prices=dearer))


async def _collect(sub: Subscription, into: list[Message]) -> None:
    try:
        async for delivery in sub:
            into.append(delivery.message)
            await sub.ack(delivery)
    finally:
        await sub.close()


async def _until(holds: Callable[[], bool]) -> None:
    """Wait until ``holds()`` is true, looking every 50 ms, at most SETTLE_TIMEOUT (the
    audit then names what did not happen)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        if holds():
            return
        await asyncio.sleep(0.05)


async def _dead_letter_counted(up: Up, summary: Summary) -> None:
    """Wait until the malformed message is in the dead-letter channel and the Kitchen that
    put it there has reported it, before any fault is injected: counters a process has
    not reported yet die with it when it is killed with SIGKILL."""
    await _until(
        lambda: (
            bool(summary.dead_letters) and sum(i.total("dead_lettered") for i in up.refresh()) > 0
        )
    )


async def _settle(up: Up, summary: Summary) -> None:
    """Wait for the courier assignments and the restarted Kitchen."""
    folder = Path(up.config.env["FTGO_STATE"])

    def settled() -> bool:
        approved = {o for o, out in summary.outcomes.items() if out.state == "approved"}
        kitchens = [i for i in up.refresh() if i.service == "kitchen"]
        return approved <= Facts.read_jobs(folder).keys() and all(
            i.state == "running" for i in kitchens
        )

    await _until(settled)


async def delete_streams(url: str, prefix: str) -> None:
    """Delete the JetStream streams of this run: its channels and the reply inboxes its
    processes left behind (a process killed with SIGKILL cannot delete its own)."""
    import nats

    from seawall._transport.assignment import token

    ours = (f"SEAWALL_{token(prefix)}", f"SEAWALL_{token('_inbox.' + prefix)}")
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(ours):
                await js.delete_stream(info.config.name)
    finally:
        await client.close()
