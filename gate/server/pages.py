"""Pages of the audit record for ``ListVerdicts``: replies that stay within a size any
gRPC client accepts, however large the records are.

A page holds at most ``limit`` records and at most :data:`MAX_PAGE_BYTES` of them.
Records are summaries (``summary`` set: the verdict without ``verdict_json``, rules and
metrics), unless the caller asked for ``LIST_VIEW_FULL``; then each record that fits
comes whole, and one that does not comes as a summary. A summary still too large for a
page of its own (labels or names recorded before the server bounded them) loses its
labels, and its long strings are cut. ``next_page_token`` names the last record sent:
the next page starts after it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.errors import RequestError
from gate.server import convert
from gate.store import EvaluationRecord

#: The most a page of records may take: well under gRPC's default 4 MiB receive limit.
MAX_PAGE_BYTES = 3 << 20

#: Each record's framing in the reply (its field tag and length).
_FRAMING_BYTES = 16

#: How much of each string a shrunk summary keeps.
_SHRUNK_CHARS = 1024


INVALID_TOKEN = "page_token is not valid; pass the next_page_token of the previous page, with the same filters"


def encode_token(evaluation_id: str) -> str:
    return base64.urlsafe_b64encode(evaluation_id.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str | None:
    """The evaluation id a page token names; None for no token."""
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        raise RequestError(INVALID_TOKEN) from None


def summary(record: EvaluationRecord) -> pb.EvaluationRecord:
    """A record with its verdict cut down to the decision, the error, names and hashes."""
    message = convert.record_to_pb(record)
    verdict = message.verdict
    for field in ("rules", "metrics", "runtime"):
        verdict.ClearField(field)
    verdict.verdict_json = ""
    verdict.attestation_json = ""
    verdict.dataset.ClearField("classes")
    verdict.labels.Clear()  # the record's own labels say the same
    message.summary = True
    return message


def _shrunk(message: pb.EvaluationRecord) -> pb.EvaluationRecord:
    message.labels.Clear()
    for holder, field in (
        (message, "model_sha256"),
        (message, "dataset"),
        (message, "policy"),
        (message.verdict.model, "path"),
        (message.verdict.dataset, "name"),
        (message.verdict.policy, "name"),
        (message.verdict.error, "message"),
    ):
        text = getattr(holder, field)
        if len(text) > _SHRUNK_CHARS:
            setattr(holder, field, text[:_SHRUNK_CHARS] + " …")
    return message


def _listed(record: EvaluationRecord, *, full: bool, room: int, first: bool) -> pb.EvaluationRecord | None:
    """``record`` as the page carries it, or None when it does not fit in ``room``."""
    if full:
        whole = convert.record_to_pb(record)
        if whole.ByteSize() + _FRAMING_BYTES <= room:
            return whole
    brief = summary(record)
    if brief.ByteSize() + _FRAMING_BYTES <= room:
        return brief
    return _shrunk(brief) if first else None


def verdict_page(
    records: Sequence[EvaluationRecord], *, limit: int, full: bool, max_bytes: int = MAX_PAGE_BYTES
) -> pb.ListVerdictsResponse:
    """A page of ``records`` (fetched with one more than ``limit``, so that a next page
    is known to exist)."""
    reply = pb.ListVerdictsResponse()
    used = 0
    for record in records[:limit]:
        message = _listed(record, full=full, room=max_bytes - used, first=not reply.records)
        if message is None:
            break
        reply.records.append(message)
        used += message.ByteSize() + _FRAMING_BYTES
    more = len(reply.records) < len(records)
    if more and reply.records:
        reply.next_page_token = encode_token(reply.records[-1].evaluation_id)
    return reply
