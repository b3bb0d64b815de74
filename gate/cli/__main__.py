"""``python -m gate.cli``: the same as the ``gate`` command (as when the command line was one module)."""

from gate.cli import entry

entry()
