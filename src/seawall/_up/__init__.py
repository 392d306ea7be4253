"""``seawall up``: a whole system as supervised OS processes, one per service instance.

:mod:`.config` reads ``seawall.toml``, :mod:`.processes` starts the broker server and the
instances and restarts them, :mod:`.child` is one instance, :mod:`.exits` says what its
exit means, :mod:`.lifeline` ends children with their supervisor, :mod:`.status` is the
live table and :mod:`.command` the ``seawall up`` command that ties them together.
"""
