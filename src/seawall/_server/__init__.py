"""The broker server: any transport served to ``seawall://`` clients over TCP or a unix
socket (``seawall broker``).

:mod:`.server` listens and accepts, :mod:`.session` runs one client connection (frames in,
transport calls, frames out), :mod:`.acl` holds the server's limits and access rules,
:mod:`.workers` the bounded pool that runs a connection's requests. It speaks the protocol
of :mod:`seawall._wire`.
"""
