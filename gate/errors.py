"""The one exception hierarchy of gate.

Every error gate raises on purpose derives from :class:`GateError` and carries a
human-readable message (``str(err)``) that names the file, field, rule or class at
fault. The tree::

    GateError
    ├── UserError          the caller's input is wrong; fix the input, not gate
    │   ├── PolicyError    a policy file is invalid (lists every problem)
    │   ├── DatasetError   a dataset spec, manifest, image or label is invalid
    │   ├── ModelError     a model cannot be loaded, has the wrong shape, emits NaN...
    │   └── RequestError   a request is malformed
    │       ├── NotFoundError    it names a model, dataset, policy or evaluation the server lacks
    │       ├── OverloadedError  the evaluation queue is full, or an upload is too large
    │       └── CancelledError   the client went away
    └── InternalError      gate or its environment failed
        ├── ProviderError           the requested execution provider cannot run here
        ├── EvaluationTimeoutError  an evaluation ran past its time limit
        └── NotReadyError           the server has not finished loading

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

    @staticmethod
    def from_kind(kind: str, message: str) -> GateError:
        """The error of kind ``kind`` (a class name of this tree, as ``error.type`` and
        worker processes report it) with ``message``; an unknown kind is an InternalError,
        so an error that crossed a process boundary never comes back as something milder."""
        stack: list[type[GateError]] = [GateError]
        while stack:
            cls = stack.pop()
            if cls.kind == kind:
                return _rebuilt(cls, message)
            stack.extend(cls.__subclasses__())
        return InternalError(message)


def _rebuilt(cls: type[GateError], message: str) -> GateError:
    """An instance of ``cls`` carrying ``message`` as it is (PolicyError's problem list is
    already part of the message it reported)."""
    error = cls.__new__(cls)
    GateError.__init__(error, message)
    if isinstance(error, PolicyError):
        error.problems = []
    return error


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


class NotFoundError(RequestError):
    """The request names a model, dataset, policy or evaluation that does not exist."""


class OverloadedError(RequestError):
    """The server is at its configured limit: the evaluation queue is full, or an upload
    is larger than allowed."""


class CancelledError(RequestError):
    """The client cancelled the call or went away."""


class InternalError(GateError):
    """gate itself, or the machine it runs on, failed."""


class ProviderError(InternalError):
    """The requested ONNX Runtime execution provider cannot run here."""


class EvaluationTimeoutError(InternalError):
    """An evaluation ran past the server's per-evaluation time limit."""


class NotReadyError(InternalError):
    """The server has not finished loading its datasets and policies."""
