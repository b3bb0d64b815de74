"""Execution engines: where an evaluation's one inference pass runs.

Each engine (:class:`gate.engines.base.InferenceEngine`) runs a model over a labelled set
and answers the predictions table. :mod:`gate.engines.local` (the default) runs in this
process; :mod:`gate.engines.ray` shards an evaluation over a Ray cluster; it needs the
optional extra ``gate[ray]`` and imports Ray only when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gate.errors import RequestError
from gate.providers import ENGINES, Engine

if TYPE_CHECKING:
    from gate.engines.base import InferenceEngine

__all__ = ["ENGINES", "engine_for"]


def engine_for(name: Engine, *, ray_address: str | None = None) -> InferenceEngine:
    """The engine called ``name`` (one of :data:`ENGINES`); a RequestError for another name."""
    if name == "local":
        from gate.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from gate.engines.ray import RayEngine

        return RayEngine(ray_address)
    raise RequestError(f"unknown engine '{name}'; choose {' or '.join(ENGINES)}")
