"""The published contract of a system: its AsyncAPI 3.0 document and a compatibility check.

Part of the edges layer, read from the services' declarations (nothing runs).
:func:`export` writes what ``seawall contract export MODULE:ATTR`` prints;
:func:`compare` is what ``seawall contract check OLD NEW`` runs, a list of
:class:`Change`, of which the breaking ones fail the check::

    changes = compare(json.load(open("asyncapi.json")), export(system))
    assert not [c for c in changes if c.breaking]
"""

from __future__ import annotations

from ._asyncapi import ENVELOPE_HEADERS, export, message_key
from ._compat import BREAKING, Change, compare

__all__ = ["BREAKING", "ENVELOPE_HEADERS", "Change", "compare", "export", "message_key"]
