"""The size limits an ``Evaluate`` request must keep before anything of it is recorded.

Every evaluation the server accepts, refused ones included, is written to the append-only
audit log with its labels and names (and the verdict repeats them), so a request's
free-text fields are bounded at the door: beyond these limits the call is
INVALID_ARGUMENT and nothing is stored.

* labels: at most :data:`MAX_LABELS` entries in ``extra``; every key at most
  :data:`MAX_LABEL_KEY_CHARS` characters, every value (``pipeline_id`` and ``git_sha``
  too) at most :data:`MAX_LABEL_VALUE_CHARS`; all keys and values together at most
  :data:`MAX_LABELS_BYTES` bytes of UTF-8;
* ``dataset``, ``policy_name``, ``model_name``, ``model_sha256``, ``baseline_sha256``:
  at most :data:`MAX_NAME_CHARS` characters each.
"""

from __future__ import annotations

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.errors import RequestError

MAX_LABELS = 32
MAX_LABEL_KEY_CHARS = 64
MAX_LABEL_VALUE_CHARS = 512
MAX_LABELS_BYTES = 4096
MAX_NAME_CHARS = 1024

_NAMED_FIELDS = ("dataset", "policy_name", "model_name", "model_sha256", "baseline_sha256")


def check_evaluate_request(request: pb.EvaluateRequest) -> None:
    """Raise :class:`RequestError` when ``request`` exceeds a limit of the module doc."""
    for field in _NAMED_FIELDS:
        length = len(getattr(request, field))
        if length > MAX_NAME_CHARS:
            raise RequestError(f"{field} has {length} characters; the limit is {MAX_NAME_CHARS}")
    check_labels(request.labels)


def check_labels(labels: pb.Labels) -> None:
    extra = labels.extra
    if len(extra) > MAX_LABELS:
        raise RequestError(f"labels.extra has {len(extra)} entries; the limit is {MAX_LABELS}")
    total = 0
    entries = [("pipeline_id", labels.pipeline_id), ("git_sha", labels.git_sha), *sorted(extra.items())]
    for key, value in entries:
        if len(key) > MAX_LABEL_KEY_CHARS:
            raise RequestError(
                f"label key {key[:MAX_LABEL_KEY_CHARS]!r}… has {len(key)} characters; the limit is"
                f" {MAX_LABEL_KEY_CHARS}"
            )
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise RequestError(
                f"label {key!r} has a value of {len(value)} characters; the limit is {MAX_LABEL_VALUE_CHARS}"
            )
        total += len(key.encode("utf-8")) + len(value.encode("utf-8"))
    if total > MAX_LABELS_BYTES:
        raise RequestError(f"the labels hold {total} bytes in all; the limit is {MAX_LABELS_BYTES}")
