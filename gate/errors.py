"""The one exception hierarchy of gate.

Every error gate raises on purpose derives from :class:`GateError` and carries a
human-readable message (``str(err)``) that names the file, field, rule or class at
fault. The tree::

    GateError
    ├── UserError          the caller's input is wrong; fix the input, not gate
    │   ├── PolicyError    a policy file is invalid (lists every problem)
    │   ├── DatasetError   a dataset spec, manifest, image or label is invalid
    │   ├── ModelError     a model cannot be loaded, has the wrong shape, emits NaN...
    │   └── RequestError   a request names something unknown or breaks a limit
    └── InternalError      gate or its environment failed (e.g. CUDA requested
        └── ProviderError  but not usable)

Any of them ends an evaluation with verdict ERROR (exit code 2); none can end in PASS.
"""

from __future__ import annotations


class GateError(Exception):
    """Base of every error gate raises on purpose."""

    #: Short machine-readable name, written to the verdict's ``error.type``.
    kind = "GateError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__


class UserError(GateError):
    """The input (model, dataset, policy, request) is wrong."""


class PolicyError(UserError):
    """A policy is invalid. ``problems`` lists every problem found, one line each."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class DatasetError(UserError):
    """A dataset spec, manifest, image file or label is invalid."""


class ModelError(UserError):
    """A model cannot be loaded or run, or its inputs/outputs break the model contract."""


class RequestError(UserError):
    """A request is malformed, names something unknown, or exceeds a limit."""


class InternalError(GateError):
    """gate itself, or the machine it runs on, failed."""


class ProviderError(InternalError):
    """The requested ONNX Runtime execution provider cannot run here."""
