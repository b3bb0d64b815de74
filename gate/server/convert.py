"""The former home of the wire conversions, kept as an alias: they live in :mod:`gate.wire`
(the client needs them, and imports nothing from :mod:`gate.server`)."""

from __future__ import annotations

from gate.wire import (
    DECISION_NAMES,
    DECISIONS,
    PROVIDERS,
    domain_verdict_to_pb,
    labels_to_dict,
    labels_to_pb,
    record_to_pb,
    verdict_to_pb,
)

__all__ = [
    "DECISIONS",
    "DECISION_NAMES",
    "PROVIDERS",
    "domain_verdict_to_pb",
    "labels_to_dict",
    "labels_to_pb",
    "record_to_pb",
    "verdict_to_pb",
]
