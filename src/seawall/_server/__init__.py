"""The broker server: any transport served to ``seawall://`` clients over TCP or a unix
socket (``seawall broker``).

:mod:`.server` listens and accepts (bounded by ``max_connections``), :mod:`.session` runs
one client connection (frames in, transport calls, frames out) after :mod:`.handshake`
opened it (TLS, Hello within a few seconds, token, Welcome); :mod:`.acl` holds the
server's limits and clients, :mod:`.rights` what one connection may do (channels, groups,
private reply inboxes, with the tables of :mod:`.inboxes`), :mod:`.served` what every
session shares, :mod:`.workers` the bounded pool that runs a connection's requests. It
speaks the protocol of :mod:`seawall._wire`.
"""
