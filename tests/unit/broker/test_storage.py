"""What the embedded broker stores of a channel's layout, so a restarted broker knows it."""

from __future__ import annotations

import dataclasses

from seawall import ChannelSpec
from seawall._broker.storage import layout_of, spec_of
from seawall._broker.store import ChannelLayout

NOT_STORED = {
    "name": "the key the layout is stored under",
    "ephemeral": "ephemeral channels (reply inboxes) are never stored",
}


def test_a_stored_layout_gives_every_setting_back() -> None:
    spec = ChannelSpec(name="orders", max_messages=7, max_age=60.0, max_bytes=4096, priorities=3)
    assert spec_of("orders", layout_of(spec)) == spec
    partitioned = ChannelSpec(name="events", partitions=8)
    assert spec_of("events", layout_of(partitioned)) == partitioned


def test_every_setting_of_a_durable_channel_has_a_place_in_the_layout() -> None:
    # a setting added to ChannelSpec but not to ChannelLayout would be lost on restart
    settings = {field.name for field in dataclasses.fields(ChannelSpec)} - set(NOT_STORED)
    assert settings == set(ChannelLayout.__struct_fields__)
