"""The exit codes every ``gate`` command answers with, a contract for CD steps:
0 PASS, 1 FAIL, 2 ERROR (anything that is not a complete judgment)."""

from __future__ import annotations

from gate.verdict import Decision

EXIT_ERROR = Decision.ERROR.exit_code
