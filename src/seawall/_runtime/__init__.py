"""The runtime: services, their handlers and everything that runs them in a process.

:mod:`.service` (handler registry), :mod:`.context` (the five interaction styles),
:mod:`.node` (the per-process core a context and consumers share), :mod:`.dispatcher` (one
subscription: bounded concurrency, per-key order through :mod:`.lanes`, retries by
:mod:`.retry`, dead letters, each failure's fate decided by :mod:`.failure`),
:mod:`.replies` and :mod:`.sends` (requests and their replies), :mod:`.supervisor`
(restart with backoff) and :mod:`.system` (services in one process over one transport).
It reaches brokers only through the transport interface (:mod:`seawall._transport`),
never an adapter or the broker engine.
"""
