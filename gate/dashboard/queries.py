"""What the dashboard reads from the audit log: filtered pages of evaluations, the
datasets evaluated, and a dataset's per-class recall across its evaluations.

Filters on the dataset, policy, verdict and model run in the database; a filter on a
label (``git_sha=abc123``, ``pipeline_id=...`` or any key of the labels' ``extra``) runs
here, over pages read from the database, and stops after :data:`MAX_SCANNED` records so
that a label nobody used cannot make one request read the whole log: the page then says
how far it looked, and its "older" link goes on from there.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gate.store import AuditLog, EvaluationRecord

DECISIONS = ("PASS", "FAIL", "ERROR")
#: Evaluations on one page of the list.
PAGE_SIZE = 50
#: The most records one request reads while looking for a label.
MAX_SCANNED = 5000
#: Records read from the database at a time while looking for a label.
_SCAN_BATCH = 250
#: The newest evaluations a dataset's page charts.
MAX_HISTORY = 500
#: The newest evaluations looked at to list the datasets evaluated.
MAX_DATASET_SCAN = 5000
#: The longest filter value accepted (names, hashes and labels are far shorter).
MAX_FILTER_CHARS = 512
#: The only query parameters the list understands.
FILTER_KEYS = ("dataset", "policy", "verdict", "model", "label", "after")


class FilterError(ValueError):
    """A query parameter the list cannot use; the message names it."""


@dataclass(frozen=True)
class Filters:
    dataset: str | None = None
    policy: str | None = None
    verdict: str | None = None
    model: str | None = None
    label: tuple[str, str] | None = None  # key, value
    after: str | None = None  # list evaluations older than this one

    def query(self, *, after: str | None = None) -> dict[str, str]:
        """These filters as query parameters (with ``after`` instead of this page's)."""
        out = {k: v for k, v in (("dataset", self.dataset), ("policy", self.policy)) if v}
        if self.verdict:
            out["verdict"] = self.verdict
        if self.model:
            out["model"] = self.model
        if self.label:
            out["label"] = f"{self.label[0]}={self.label[1]}"
        if after:
            out["after"] = after
        return out


def parse_filters(params: Mapping[str, str]) -> Filters:
    """The list's filters from its query parameters; FilterError for one it cannot use."""
    unknown = sorted(set(params) - set(FILTER_KEYS))
    if unknown:
        raise FilterError(f"unknown query parameter {unknown[0]!r}; the list takes {', '.join(FILTER_KEYS)}")
    for key, value in params.items():
        if len(value) > MAX_FILTER_CHARS:
            raise FilterError(f"{key} is {len(value)} characters long; the limit is {MAX_FILTER_CHARS}")
    values = {k: v.strip() or None for k, v in params.items()}
    verdict = values.get("verdict")
    if verdict is not None and verdict.upper() not in DECISIONS:
        raise FilterError(f"verdict must be one of {', '.join(DECISIONS)}, not {verdict!r}")
    label = None
    if values.get("label"):
        key, sep, wanted = str(values["label"]).partition("=")
        if not sep or not key.strip():
            raise FilterError("label must be KEY=VALUE, e.g. git_sha=3f2a9c1")
        label = (key.strip(), wanted.strip())
    return Filters(
        dataset=values.get("dataset"),
        policy=values.get("policy"),
        verdict=verdict.upper() if verdict else None,
        model=values.get("model"),
        label=label,
        after=values.get("after"),
    )


def label_value(labels: Mapping[str, Any], key: str) -> str | None:
    """A record's label ``key``: ``pipeline_id``, ``git_sha`` or a key of ``extra``."""
    value = labels.get(key) if key in ("pipeline_id", "git_sha") else None
    extra = labels.get("extra")
    if value is None and isinstance(extra, Mapping):
        value = extra.get(key)
    return None if value is None else str(value)


@dataclass
class Page:
    """One page of the list: its records, and where the next (older) page starts."""

    records: list[EvaluationRecord] = field(default_factory=list)
    older: str | None = None  # the ``after`` of the next page; None at the end of the log
    scanned: int = 0  # records read while looking for a label


def list_evaluations(store: AuditLog, filters: Filters, *, limit: int = PAGE_SIZE) -> Page:
    """The newest evaluations matching ``filters``, older than ``filters.after``.
    ValueError (from the store) for an ``after`` that was never recorded."""

    def fetch(count: int, after: str | None) -> list[EvaluationRecord]:
        return store.list(
            dataset=filters.dataset,
            policy=filters.policy,
            decision=filters.verdict,
            model_sha256=filters.model,
            limit=count,
            after=after,
        )

    if filters.label is None:
        found = fetch(limit + 1, filters.after)
        return Page(found[:limit], found[limit - 1].evaluation_id if len(found) > limit else None)
    key, wanted = filters.label
    page = Page()
    after = filters.after
    while page.scanned < MAX_SCANNED:
        batch = fetch(_SCAN_BATCH, after)
        for record in batch:
            page.scanned += 1
            if label_value(record.labels, key) == wanted:
                page.records.append(record)
                if len(page.records) == limit:
                    page.older = record.evaluation_id
                    return page
            after = record.evaluation_id
        if len(batch) < _SCAN_BATCH:
            return page  # the end of the log
    page.older = after
    return page


def datasets_evaluated(store: AuditLog) -> list[tuple[str, int, str]]:
    """The datasets of the newest :data:`MAX_DATASET_SCAN` evaluations: each name, how
    many of them it had and when the last one was accepted, most recent first."""
    seen: dict[str, tuple[int, str]] = {}
    for record in store.list(limit=MAX_DATASET_SCAN):
        count, last = seen.get(record.dataset, (0, record.created_at))
        seen[record.dataset] = (count + 1, last)
    return [(name, count, last) for name, (count, last) in seen.items()]


@dataclass(frozen=True)
class RecallPoint:
    """One finished evaluation of a dataset, with the recall of each class it measured."""

    record: EvaluationRecord
    when: dt.datetime
    recall: dict[str, float]

    @property
    def model(self) -> str:
        """The model as a reader knows it: its name, else the start of its SHA-256."""
        return self.record.model_name or self.record.model_sha256[:12]


def parse_time(text: str) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _recalls(verdict: Mapping[str, Any] | None) -> dict[str, float]:
    metrics = verdict.get("metrics") if verdict else None
    per_class = metrics.get("per_class") if isinstance(metrics, Mapping) else None
    if not isinstance(per_class, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, values in per_class.items():
        recall = values.get("recall") if isinstance(values, Mapping) else None
        # a class without support has no recall (null): it is left out, not drawn as 0
        if isinstance(recall, int | float) and not isinstance(recall, bool) and math.isfinite(recall):
            out[str(name)] = float(recall)
    return out


def recall_history(store: AuditLog, dataset: str, *, limit: int = MAX_HISTORY) -> list[RecallPoint]:
    """The dataset's newest finished evaluations that measured per-class recall, oldest first."""
    points = []
    # the store lists newest first: reversed, evaluations accepted in the same second keep their order
    for record in reversed(store.list(dataset=dataset, limit=limit)):
        recall = _recalls(record.verdict)
        when = parse_time(record.created_at)
        if recall and when is not None:
            points.append(RecallPoint(record, when, recall))
    points.sort(key=lambda p: p.when)
    return points
