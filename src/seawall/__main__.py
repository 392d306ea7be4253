"""``python -m seawall`` is the ``seawall`` command."""

from ._cli import main

main()
