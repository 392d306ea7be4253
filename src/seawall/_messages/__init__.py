"""Messages: the bottom layer, no I/O.

The envelope (:mod:`.envelope`, CloudEvents 1.0 attributes and their broker headers), user
payload classes (:mod:`.payload`), codecs (:mod:`.codec`, JSON and MessagePack through
msgspec) and time-ordered ids (:mod:`.ids`). Every other layer builds on these; they
import nothing of seawall but the exception tree.
"""
