"""Execution engines other than the local one.

The local engine (inference in this process, see :mod:`gate.evaluation`) is the
default. :mod:`gate.engines.ray_engine` shards an evaluation over a Ray cluster; it
needs the optional extra ``gate[ray]`` and imports Ray only when it runs.
"""

from __future__ import annotations

from gate.providers import ENGINES

__all__ = ["ENGINES"]
