"""Restaurant service: owns the menus and publishes every revision (publish/subscribe).

The Order service keeps its own replica of the menus from these events
instead of asking the Restaurant service on every order.
"""

from __future__ import annotations

import json

from seawall import Context, Service

from .messages import MenuRevised, ReviseMenu
from .names import channel
from .store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS menus (
    restaurant_id TEXT PRIMARY KEY, version INTEGER NOT NULL, prices TEXT NOT NULL
);
"""


def service() -> Service:
    restaurant = Service(channel("restaurant"), concurrency=1)  # one revision at a time
    store = Store("restaurant", SCHEMA)

    @restaurant.command
    async def revise(cmd: ReviseMenu, ctx: Context) -> None:
        row = store.one("SELECT version FROM menus WHERE restaurant_id = ?", cmd.restaurant_id)
        version = 1 if row is None else row[0] + 1
        store.run(
            "INSERT OR REPLACE INTO menus VALUES (?, ?, ?)",
            cmd.restaurant_id,
            version,
            json.dumps(cmd.prices),
        )
        revised = MenuRevised(restaurant_id=cmd.restaurant_id, version=version, prices=cmd.prices)
        await ctx.publish(revised, key=cmd.restaurant_id)

    return restaurant
