"""The embedded broker engine: the durable log that ``embedded://`` runs in-process and
``seawall broker`` serves to other processes.

From the bottom up: :mod:`.log` (sans-IO partitioned logs, consumer groups, credit and
redelivery; also the model of ``memory://``), :mod:`.store` (one SQLite file in WAL mode,
synchronous), :mod:`.store_writer` (group commit on one writer thread), :mod:`.pages` (a
partition's bounded tail in memory over the store), :mod:`.storage` (what the engine needs
of a store) and :mod:`.engine` (channels, groups and credit over all of it). The engine
sits beside the other adapters: the runtime never imports it.
"""
