"""Names that say where and how an evaluation runs: execution providers and engines.

Dependency-free on purpose: commands that never run a model (``gate verify``, ``gate
token``, ``gate history``) and the configuration use these names without importing ONNX
Runtime.
"""

from __future__ import annotations

from typing import Literal

Provider = Literal["auto", "cuda", "cpu"]
PROVIDERS: tuple[Provider, ...] = ("auto", "cuda", "cpu")
# ONNX Runtime's names for the two execution providers gate uses
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")
