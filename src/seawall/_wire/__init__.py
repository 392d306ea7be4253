"""The ``seawall://`` wire protocol, shared by the broker server and its clients.

:mod:`.protocol` is the sans-IO framing and the protocol's specification, :mod:`.state`
the sans-IO connection state (heartbeats, request pipeline), :mod:`.streams` the thin
asyncio half both ends use.
"""
