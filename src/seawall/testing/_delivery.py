"""Delivery conformance: what the runtime guarantees on top of any transport.

Retries, dead letters, per-key order, resubscription, routing by schema
version and the expiry of late messages are written once above the transport
interface; this suite checks that they hold on a given transport (which must
carry the ``dataschema`` and ``deadline`` attributes for them to), in real
time, with the real :class:`~seawall.System`. Subclass it
next to :class:`TransportConformance` and supply the same two hooks::

    class TestMyBroker(TransportConformance, DeliveryConformance):
        async def make_transport(self) -> Transport: ...
        async def break_link(self, transport: Transport) -> None: ...
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from .._messages.envelope import Message
from .._messages.payload import Command, Document
from .._runtime.context import Context
from .._runtime.dispatcher import dead_letter_channel
from .._runtime.middleware import NextSend, Outgoing
from .._runtime.retry import RetryPolicy
from .._runtime.service import Service
from .._runtime.system import System
from .._transport import ChannelSpec, Transport
from ..resilience import CallPolicy, RequestRetry

__all__ = ["DeliveryConformance"]


class Job(Command, frozen=True):
    """The work item the suite sends."""

    type_name = "seawall.conformance.Job"
    n: int
    key: str = ""


class JobDone(Document, frozen=True):
    """The reply to a job."""

    type_name = "seawall.conformance.JobDone"
    n: int


class JobV2(Command, frozen=True):
    """The work item in its next major version, handled beside the first."""

    type_name = "seawall.conformance.Job"
    type_version = "2.0.0"
    n: int
    label: str


class JobV9(Command, frozen=True):
    """A major version no handler of the suite takes."""

    type_name = "seawall.conformance.Job"
    type_version = "9.0.0"
    n: int


FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.0)


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true or fail the test naming ``what``."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


class DeliveryConformance:
    """Runtime guarantees over a transport; subclasses supply the factory."""

    timeout: float = 10.0
    name_prefix: str = "svc"
    """Start of the service (and channel) names the tests make: give a run of its own
    a mark of its own on a broker other runs share."""

    async def make_transport(self) -> Transport:
        raise NotImplementedError

    async def break_link(self, transport: Transport) -> None:
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def link(self) -> AsyncIterator[Transport]:
        transport = await self.make_transport()
        try:
            yield transport
        finally:
            await transport.close()

    @pytest.fixture
    def name(self) -> str:
        return f"{self.name_prefix}{uuid.uuid4().hex[:10]}"

    async def _dead_letters(self, link: Transport, group: str, count: int) -> list[Message]:
        sub = await link.subscribe(dead_letter_channel(group), group="inspector")
        found: list[Message] = []
        try:
            async with asyncio.timeout(self.timeout):
                async for delivery in sub:
                    found.append(delivery.message)
                    await sub.ack(delivery)
                    if len(found) == count:
                        break
        finally:
            await sub.close()
        return found

    async def test_dead_letter_after_attempt_limit_has_reason_attempt_and_channel(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name, retry=FAST_RETRY)
        attempts: list[int] = []

        @svc.command
        async def fail(job: Job) -> None:
            attempts.append(job.n)
            raise RuntimeError(f"job {job.n} cannot work")

        async with System(svc, transport=link) as system:
            await system.context().send(name, Job(n=7))
            [dead] = await self._dead_letters(link, name, 1)
        assert attempts == [7, 7, 7]
        assert dead.type == Job.type_name
        assert dead.headers["seawall-dlq-reason"] == "handler-error"
        assert dead.headers["seawall-dlq-attempt"] == "3"
        assert dead.headers["seawall-dlq-channel"] == name
        assert dead.headers["seawall-dlq-group"] == name
        assert "RuntimeError: job 7 cannot work" in dead.headers["seawall-dlq-error"]

    async def test_order_per_key_holds_under_retries_while_other_keys_flow(
        self, link: Transport, name: str
    ) -> None:
        await link.declare(ChannelSpec(name=name, partitions=4))
        # Backoff long enough that publishing all 40 (sequential, durable on some
        # transports) ends well before the failing message's last retry.
        slow_retry = RetryPolicy(max_attempts=3, initial_backoff=0.25, max_backoff=0.5, jitter=0)
        svc = Service(name, concurrency=8, retry=slow_retry, partitions=4)
        handled: dict[str, list[int]] = {}
        finished_at: dict[tuple[str, int], float] = {}
        failures = {("k1", 1): 2}  # the 2nd message of k1 fails twice, then works

        @svc.command
        async def work(job: Job) -> None:
            left = failures.get((job.key, job.n), 0)
            if left:
                failures[(job.key, job.n)] = left - 1
                raise ConnectionError("flaky")
            handled.setdefault(job.key, []).append(job.n)
            finished_at[(job.key, job.n)] = time.monotonic()

        keys = [f"k{i}" for i in range(4)]
        async with System(svc, transport=link) as system:
            ctx = system.context()
            for n in range(10):
                for key in keys:
                    await ctx.send(name, Job(n=n, key=key), key=key)
            await wait_until(lambda: sum(map(len, handled.values())) == 40, self.timeout, "40 jobs")
        assert handled == {key: list(range(10)) for key in keys}
        # while k1 waited for its retries, the other keys kept going
        assert (
            finished_at[("k0", 9)] < finished_at[("k1", 1)]
            or finished_at[("k2", 9)] < finished_at[("k1", 1)]
        )

    async def test_poison_messages_go_to_dead_letters_at_once_and_work_continues(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name, retry=FAST_RETRY)
        done: list[int] = []

        @svc.command
        async def work(job: Job) -> None:
            done.append(job.n)

        async with System(svc, transport=link) as system:
            node = system.node
            good = node.envelope(Job(n=1), source="test")
            await link.publish(
                name, Message(id="bad-body", type=Job.type_name, source="t", data=b"{")
            )
            await link.publish(
                name, Message(id="bad-type", type="nobody.Knows", source="t", data=b"{}")
            )
            await link.publish(name, good)
            dead = await self._dead_letters(link, name, 2)
            await wait_until(lambda: done == [1], self.timeout, "the good job")
        reasons = {m.id: m.headers["seawall-dlq-reason"] for m in dead}
        assert reasons == {"bad-body": "decode-error", "bad-type": "unknown-type"}
        assert all(m.headers["seawall-dlq-attempt"] == "1" for m in dead)
        assert (
            "nobody.Knows"
            in next(m for m in dead if m.id == "bad-type").headers["seawall-dlq-error"]
        )

    async def test_each_major_version_reaches_its_handler_and_an_unknown_one_is_dead_lettered(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name)
        seen: list[Job | JobV2] = []

        @svc.command
        async def work_v1(job: Job) -> None:
            seen.append(job)

        @svc.command
        async def work_v2(job: JobV2) -> None:
            seen.append(job)

        async with System(svc, transport=link) as system:
            ctx = system.context()
            for job in (JobV2(n=2, label="two"), JobV9(n=9), Job(n=1)):
                await ctx.send(name, job)
            [dead] = await self._dead_letters(link, name, 1)
            await wait_until(lambda: len(seen) == 2, self.timeout, "both majors handled")
        assert set(seen) == {Job(n=1), JobV2(n=2, label="two")}
        assert dead.dataschema == "urn:seawall:seawall.conformance.Job:9.0.0"
        assert dead.headers["seawall-dlq-reason"] == "unknown-version"

    async def test_an_expired_command_is_dead_lettered_not_lost(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name)
        done: list[int] = []

        @svc.command
        async def work(job: Job) -> None:
            done.append(job.n)

        async with System(svc, transport=link) as system:
            ctx = system.context()
            await ctx.send(name, Job(n=1), deadline=system.clock.time() - 1)
            await ctx.send(name, Job(n=2))
            [dead] = await self._dead_letters(link, name, 1)
            await wait_until(lambda: done == [2], self.timeout, "the job in time")
        assert dead.headers["seawall-dlq-reason"] == "expired"
        assert dead.headers["seawall-dlq-channel"] == name
        assert dead.deadline is not None

    async def test_consumer_resubscribes_after_a_broken_link(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name)
        done: set[int] = set()

        @svc.command
        async def work(job: Job) -> None:
            done.add(job.n)

        async with System(svc, transport=link) as system:
            ctx = system.context()
            for n in range(5):
                await ctx.send(name, Job(n=n))
            await wait_until(lambda: len(done) == 5, self.timeout, "jobs before the failure")
            await self.break_link(link)
            for n in range(5, 10):
                await ctx.send(name, Job(n=n))
            await wait_until(lambda: len(done) == 10, self.timeout, "jobs after the failure")
            assert system.healthy

    async def test_drain_finishes_in_flight_work_and_loses_nothing(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name, concurrency=4)
        started: list[int] = []
        finished: list[int] = []

        @svc.command
        async def slow(job: Job) -> None:
            started.append(job.n)
            await asyncio.sleep(0.2)
            finished.append(job.n)

        # all 20 wait before the service starts (sent as they come, they could all be
        # handled before the stop on a slow machine): 4 at a time take at least 1 s
        await link.declare(ChannelSpec(name=name))
        async with System(transport=link) as sender:
            for n in range(20):
                await sender.context().send(name, Job(n=n))
        async with System(svc, transport=link, grace=5.0):
            await wait_until(lambda: len(started) >= 4, self.timeout, "work to start")
        # leaving the block drained: everything that started also finished
        assert sorted(started) == sorted(finished)
        assert len(finished) < 20
        async with System(svc, transport=link):
            await wait_until(lambda: len(set(finished)) == 20, self.timeout, "the rest")
        assert sorted(set(finished)) == list(range(20))

    async def test_a_stop_with_retries_parked_keeps_key_order_and_handles_each_once(
        self, link: Transport, name: str
    ) -> None:
        await self._stop_and_restart_with_retries_parked(link, name, partitions=1)

    async def test_a_stop_with_retries_parked_keeps_order_on_every_partition(
        self, link: Transport, name: str
    ) -> None:
        await self._stop_and_restart_with_retries_parked(link, name, partitions=4)

    async def _stop_and_restart_with_retries_parked(
        self, link: Transport, name: str, *, partitions: int
    ) -> None:
        """The first message of every key fails once and is parked for a retry a minute
        away, its key's later messages waiting behind it; then the system stops
        gracefully and starts again. The stop must hand them all back in order, so
        that the next run handles each once, in order, at once (not after a broker's
        redelivery timeout)."""
        await link.declare(ChannelSpec(name=name, partitions=partitions))
        parked = RetryPolicy(max_attempts=5, initial_backoff=60.0, max_backoff=60.0, jitter=0)
        keys = [f"k{i}" for i in range(4)]
        handled: dict[str, list[int]] = {}
        ids: list[str] = []
        failing = {"on": True}

        def service() -> Service:
            svc = Service(name, concurrency=4, retry=parked, partitions=partitions)

            @svc.command
            async def work(job: Job, ctx: Context) -> None:
                if job.n == 0 and failing["on"]:
                    raise ConnectionError("flaky: parked for a retry")
                handled.setdefault(job.key, []).append(job.n)
                assert ctx.message is not None
                ids.append(ctx.message.id)

            return svc

        async with System(service(), transport=link, grace=5.0) as system:
            ctx = system.context()
            for n in range(3):
                for key in keys:
                    await ctx.send(name, Job(n=n, key=key), key=key)
            await wait_until(
                lambda: sum(s.retried for s in system.stats().values()) == len(keys),
                self.timeout,
                "the first message of every key to be parked",
            )
            await asyncio.sleep(0.2)  # the later messages are read meanwhile
        assert handled == {}, "a later message of a key overtook its parked first one"
        failing["on"] = False
        async with System(service(), transport=link) as system:
            await wait_until(
                lambda: len(ids) >= 3 * len(keys), self.timeout, "every message, after a restart"
            )
            await asyncio.sleep(0.2)  # a duplicate would come meanwhile
        assert handled == {key: [0, 1, 2] for key in keys}
        assert len(ids) == len(set(ids)) == 3 * len(keys), "a message was handled twice"

    async def test_work_unfinished_after_grace_is_delivered_again(
        self, link: Transport, name: str
    ) -> None:
        svc = Service(name, concurrency=1)
        seen: list[int] = []
        hang = {"on": True}

        @svc.command
        async def stuck(job: Job, ctx: Context) -> None:
            seen.append(job.n)
            if hang["on"]:
                await asyncio.sleep(60)

        async with System(svc, transport=link, grace=0.1) as system:
            await system.context().send(name, Job(n=1))
            await wait_until(lambda: seen == [1], self.timeout, "the job to start")
        hang["on"] = False
        async with System(svc, transport=link):
            await wait_until(lambda: seen == [1, 1], self.timeout, "the redelivery")

    # -- idempotent requests (seawall.resilience) ----------------------------------------
    async def test_a_request_retried_after_lost_replies_runs_its_handler_once(
        self, link: Transport, name: str
    ) -> None:
        """Three replies lost on the way back; the requester sends the request again, same
        id, each time; the responder answers the repeats from its reply cache."""
        svc = Service(name)
        runs: list[int] = []
        lost: list[str] = []

        @svc.command
        async def work(job: Job) -> JobDone:
            runs.append(job.n)
            return JobDone(n=job.n * 10)

        responder = System(svc, transport=link)

        @responder.around_send
        async def lose_replies(out: Outgoing, call_next: NextSend) -> None:
            if out.kind == "reply" and len(lost) < 3:
                lost.append(out.message.causationid or "")
                return  # the reply never reaches the requester
            await call_next(out)

        attempt = 3 * getattr(self, "quiet_period", 0.3)
        retry = RequestRetry(attempts=4, attempt_timeout=attempt, initial_backoff=0.01, jitter=0)
        policy = CallPolicy(retry=retry, timeout=self.timeout)
        async with responder, System(transport=link) as requester:
            ctx = requester.context()
            reply = await ctx.request(name, Job(n=4), returns=JobDone, policy=policy)
            [stats] = responder.stats().values()
        assert reply == JobDone(n=40)
        assert runs == [4], "the handler ran again for a repeated request"
        assert len(lost) == 3
        assert len(set(lost)) == 1, "a retry carried a new message id"
        assert stats.repeats == 3
        assert stats.handled == 1
