"""The former name of :mod:`gate.engines.ray`: existing imports of the Ray engine (the
deployment image's check, scripts) keep working."""

from __future__ import annotations

from gate.engines.ray import SHARD_BYTES, Decode, RayEngine, ShardedResult, evaluate_sharded, ray_installed

__all__ = ["SHARD_BYTES", "Decode", "RayEngine", "ShardedResult", "evaluate_sharded", "ray_installed"]
