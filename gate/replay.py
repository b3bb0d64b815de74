"""Policy replay: what another policy would have said of the evaluations already recorded.

Each recorded evaluation is judged again from the evidence its verdict kept, without
running any model: the confusion matrix (and calibration bins) in its ``metrics``, the
training sample's metrics in ``train_sample``, the waivers it recorded (valid at the time
of the evaluation, as then). A rule that needs per-sample evidence (a rule reading the
predictions table, or a ``baseline`` comparison) is judged on the predictions tables the
results cache kept, loaded only when such a rule asks; an evaluation whose evidence is
gone is listed as not replayable, with the reason. Nothing here loads ONNX Runtime.

:func:`replay_records` and :func:`replay_store` return a :class:`ReplayReport` (data:
the CLI, the service and the dashboard render it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gate.errors import GateError, PolicyError, RequestError
from gate.heldout.top_k import names_top_k
from gate.metrics import CALIBRATION_BINS, Calibration, ClassificationMetrics, top_k_hits
from gate.policy import Policy, apply_policy
from gate.policy.context import NEEDS, BaselineRun, RuleContext, TrainSample
from gate.predictions import PredictionTable
from gate.verdict import Decision, RuleResult, Status, Verdict, decide
from gate.waivers import Waiver, apply_waivers, parse_time

if TYPE_CHECKING:
    from gate.store import AuditLog, EvaluationRecord

SCHEMA = "gate.replay/v1"
#: How many evaluations a replay judges when the caller sets no limit.
DEFAULT_LIMIT = 1000
_FIXED_POINT = float(1 << 32)  # as gate.metrics keeps summed confidences

#: Finds a stored predictions table: (model SHA-256, dataset SHA-256, provider that ran).
TableSource = Callable[[str, str, str], PredictionTable | None]


class NotReplayableError(Exception):
    """An evaluation whose recorded evidence cannot support the new policy."""


@dataclass(frozen=True)
class ReplayRow:
    """One recorded evaluation: its recorded verdict and the new one (or why there is none)."""

    evaluation_id: str
    created_at: str
    model_sha256: str
    model_name: str | None
    dataset: str
    policy: str  # the policy it was recorded under
    old: str | None  # PASS, FAIL or ERROR as recorded; None while running
    new: str | None  # the decision under the replayed policy; None when not replayable
    reason: str | None = None  # why it is not replayable
    blocking: tuple[str, ...] = ()  # "rule-id: message" of each rule that blocks under the new policy
    changed: tuple[str, ...] = ()  # ids of the rules whose status differs from the recorded one

    @property
    def change(self) -> str:
        """``now FAIL``, ``now PASS``, ``now ERROR``, ``same`` or ``not replayable``."""
        if self.new is None:
            return "not replayable"
        return "same" if self.new == self.old else f"now {self.new}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "change": self.change}


@dataclass
class ReplayReport:
    """A replay: the policy replayed and one row per evaluation, newest first."""

    policy: dict[str, Any]
    rows: list[ReplayRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "evaluations": len(self.rows),
            "now_fail": sum(r.old == "PASS" and r.new == "FAIL" for r in self.rows),
            "now_pass": sum(r.old == "FAIL" and r.new == "PASS" for r in self.rows),
            "changed": sum(r.new is not None and r.new != r.old for r in self.rows),
            "not_replayable": sum(r.new is None for r in self.rows),
        }

    def summary(self) -> str:
        c = self.counts()
        line = f"{c['evaluations']} evaluations: {c['now_fail']} would now FAIL, {c['now_pass']} would now PASS"
        return line + (f", {c['not_replayable']} not replayable" if c["not_replayable"] else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "policy": self.policy,
            "summary": self.summary(),
            "counts": self.counts(),
            "evaluations": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ReplayReport:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema={doc.get('schema')!r})")
        rows = []
        for r in doc.get("evaluations", []):
            fields = {k: v for k, v in r.items() if k != "change"}
            fields["blocking"], fields["changed"] = tuple(r.get("blocking", ())), tuple(r.get("changed", ()))
            rows.append(ReplayRow(**fields))
        return cls(policy=dict(doc.get("policy") or {}), rows=rows)


# -- the evidence a verdict kept --------------------------------------------------------------


def _calibration(metrics: Mapping[str, Any]) -> Calibration | None:
    """The calibration bins a verdict recorded, back as counts (confidences to 2⁻³²)."""
    bins = (metrics.get("calibration") or {}).get("bins")
    if not isinstance(bins, list) or len(bins) != CALIBRATION_BINS:
        return None
    # one array for the three columns: this runs once per replayed evaluation
    rows = np.array([(b["count"], b["accuracy"] or 0.0, b["confidence"] or 0.0) for b in bins], dtype=np.float64)
    counts = rows[:, 0].astype(np.int64)
    correct = np.rint(rows[:, 1] * rows[:, 0]).astype(np.int64)
    conf = np.rint(rows[:, 2] * rows[:, 0] * _FIXED_POINT).astype(np.int64)
    return Calibration(counts, correct, conf)


def recorded_metrics(metrics: Mapping[str, Any] | None, classes: list[str] | None) -> ClassificationMetrics:
    """The metrics a verdict recorded, rebuilt from its confusion matrix."""
    if not isinstance(metrics, Mapping) or "confusion_matrix" not in metrics:
        raise NotReplayableError("its verdict holds no confusion matrix")
    names = classes or list((metrics.get("per_class") or {}).keys())
    try:
        return ClassificationMetrics.from_confusion(metrics["confusion_matrix"], names, _calibration(metrics))
    except (ValueError, TypeError, KeyError) as e:
        raise NotReplayableError(f"its recorded confusion matrix cannot be read: {e}") from None


def _train_sample(doc: Mapping[str, Any], classes: list[str] | None) -> TrainSample | None:
    section = doc.get("train_sample")
    if not isinstance(section, Mapping):
        return None
    return TrainSample(
        str(section.get("name")), str(section.get("source")), recorded_metrics(section.get("metrics"), classes)
    )


@dataclass
class _Evidence:
    """What one recorded verdict offers the rules, the tables fetched only on demand."""

    doc: Mapping[str, Any]
    tables: TableSource | None
    _cache: dict[str, PredictionTable | None] = field(default_factory=dict)

    def table(self, model_sha256: str, what: str) -> PredictionTable:
        table = self.find(model_sha256)
        if table is None:
            raise NotReplayableError(
                f"{what} needs the predictions table of model {model_sha256[:12]}, which is no longer kept"
            )
        return table

    def find(self, model_sha256: str) -> PredictionTable | None:
        if model_sha256 not in self._cache:
            found = None
            if self.tables is not None:
                ds, rt = self.doc.get("dataset") or {}, self.doc.get("runtime") or {}
                found = self.tables(model_sha256, str(ds.get("sha256")), str(rt.get("provider")))
            self._cache[model_sha256] = found
        return self._cache[model_sha256]


def _needs_evidence(policy: Policy, doc: Mapping[str, Any], evidence: _Evidence, context: RuleContext) -> RuleContext:
    """The context with the extra evidence the policy's rules need, or NotReplayableError."""
    for rule in policy.rules:
        if rule.needs == "fingerprint":
            raise NotReplayableError(
                f"rule '{rule.id}' ({rule.type}) needs the training fingerprint, which evaluations do not keep"
            )
        if rule.needs not in (None, "train_sample", "baseline"):
            raise NotReplayableError(
                f"rule '{rule.id}' ({rule.type}) needs {NEEDS.get(str(rule.needs), rule.needs)}"
                " run with the model, which a replay does not do"
            )
        if rule.needs == "train_sample" and context.train_sample is None:
            train = _train_sample(doc, list(context.metrics.classes))
            if train is None:
                raise NotReplayableError(
                    f"rule '{rule.id}' ({rule.type}) needs a training sample the evaluation did not run"
                )
            context = dataclasses.replace(context, train_sample=train)
        if rule.needs == "baseline" and context.baseline is None:
            context = dataclasses.replace(context, baseline=_baseline(rule.id, doc, evidence))
    return context


def _baseline(rule_id: str, doc: Mapping[str, Any], evidence: _Evidence) -> BaselineRun:
    champion = ((doc.get("baseline") or {}).get("model") or {}).get("sha256")
    if not champion:
        raise NotReplayableError(f"rule '{rule_id}' (baseline) needs a champion the evaluation was not compared with")
    mine = evidence.table(str(doc["model"]["sha256"]), f"rule '{rule_id}'")
    theirs = evidence.table(str(champion), f"rule '{rule_id}'")
    return BaselineRun(
        model=dict((doc.get("baseline") or {}).get("model") or {}),
        metrics=theirs.metrics(),
        labels=mine.label,
        champion_correct=theirs.correct,
        challenger_correct=mine.correct,
    )


# -- judging one ---------------------------------------------------------------------------------


def _judged_all(rules: list[RuleResult], *, kept: bool) -> None:
    """NotReplayableError for the first rule the stored evidence could not judge (one
    needing what only a run of the model gives, such as a latency)."""
    unjudged = next((r for r in rules if r.status is Status.ERROR), None)
    if unjudged is not None:
        gone = "" if kept else "; its predictions table is no longer kept"
        raise NotReplayableError(
            f"rule '{unjudged.id}' ({unjudged.type}) cannot be judged from what the evaluation stored:"
            f" {unjudged.message}{gone}"
        )


def _recorded_waivers(doc: Mapping[str, Any]) -> list[Waiver]:
    model, dataset = (doc.get("model") or {}).get("sha256"), (doc.get("dataset") or {}).get("name")
    waivers = [
        Waiver(
            id=str(w.get("id")),
            model_sha256=str(model),
            dataset=str(dataset),
            rule_id=str(w.get("rule")),
            reason=str(w.get("reason")),
            expires_at=str(w.get("expires_at")),
            granted_by=str(w.get("granted_by")),
            granted_at=str(w.get("granted_at")),
        )
        for w in doc.get("waivers") or ()
        if isinstance(w, Mapping)
    ]
    for waiver in waivers:  # a time that cannot be read would stop the whole replay later
        try:
            parse_time(waiver.granted_at), parse_time(waiver.expires_at)
        except ValueError:
            raise NotReplayableError(f"its recorded waiver {waiver.id!r} has no valid grant or expiry time") from None
    return waivers


def _check_sections(doc: Mapping[str, Any]) -> None:
    """NotReplayableError unless the sections a replay reads are objects and the model
    has its SHA-256 (a recorded verdict of another form is this row's problem only)."""
    for section in ("model", "dataset", "runtime", "metrics", "baseline", "train_sample"):
        if doc.get(section) is not None and not isinstance(doc[section], Mapping):
            raise NotReplayableError(f"its verdict's {section!r} is not an object")
    if not isinstance((doc.get("model") or {}).get("sha256"), str):
        raise NotReplayableError("its verdict names no model SHA-256")


def _judged_at(doc: Mapping[str, Any]) -> dt.datetime:
    try:
        return parse_time(str(doc.get("started_at")))
    except ValueError:
        raise NotReplayableError("its verdict has no valid start time") from None


def _with_top_k(metrics: ClassificationMetrics, doc: Mapping[str, Any], evidence: _Evidence) -> ClassificationMetrics:
    """Top-k accuracy is not in a confusion matrix: its hits are counted again on the
    stored predictions table (NotReplayableError when it is no longer kept)."""
    table = evidence.table(str(doc["model"]["sha256"]), "a top-k accuracy rule")
    return dataclasses.replace(metrics, top_k_hits=top_k_hits(table.label, table.top_k_class))


def rejudge(doc: Mapping[str, Any], policy: Policy, *, tables: TableSource | None = None) -> Verdict:
    """The verdict ``policy`` gives the evidence a recorded verdict document kept, with
    the waivers it recorded applied as they were then. NotReplayableError when the
    evidence is not there."""
    if doc.get("verdict") not in (Decision.PASS.value, Decision.FAIL.value):
        raise NotReplayableError(f"it ended {doc.get('verdict') or 'without a verdict'}: no metrics were judged")
    _check_sections(doc)
    classes = (doc.get("dataset") or {}).get("classes")
    metrics = recorded_metrics(doc.get("metrics"), list(classes) if classes else None)
    try:
        policy.check_classes(metrics.classes)
    except PolicyError as e:
        raise NotReplayableError(f"the policy does not fit its dataset: {e.message}") from None
    evidence = _Evidence(doc, tables)
    if names_top_k({str(getattr(rule, "metric", "")) for rule in policy.rules}):
        metrics = _with_top_k(metrics, doc, evidence)
    context = _needs_evidence(policy, doc, evidence, RuleContext(metrics))
    rules = apply_policy(policy, metrics, context)
    if any(r.status is Status.ERROR for r in rules):
        # a rule that reads per-sample evidence: judge again with the predictions table
        table = evidence.find(str(doc["model"]["sha256"]))
        if table is not None:
            rules = apply_policy(policy, metrics, dataclasses.replace(context, table=table))
        _judged_all(rules, kept=table is not None)
    at = _judged_at(doc)
    verdict = Verdict(
        decision=decide(rules, at=at),
        model=dict(doc.get("model") or {}),
        dataset=dict(doc.get("dataset") or {}),
        policy=policy.to_dict(),
        runtime=dict(doc.get("runtime") or {}),
        metrics=dict(doc.get("metrics") or {}),
        rules=rules,
        started_at=str(doc.get("started_at")),
        evaluation_id=doc.get("evaluation_id"),
        labels=dict(doc.get("labels") or {}),
    )
    return apply_waivers(verdict, _recorded_waivers(doc), at=at)


def _changed(old: list[Any], new: list[RuleResult]) -> tuple[str, ...]:
    before = {r.get("id"): r.get("status") for r in old if isinstance(r, Mapping)}
    return tuple(r.id for r in new if before.get(r.id) != r.status.value)


def replay_record(record: EvaluationRecord, policy: Policy, *, tables: TableSource | None = None) -> ReplayRow:
    """One row of a replay: the recorded evaluation judged again, or why it cannot be."""
    row = ReplayRow(
        evaluation_id=record.evaluation_id,
        created_at=record.created_at,
        model_sha256=record.model_sha256,
        model_name=record.model_name,
        dataset=record.dataset,
        policy=record.policy,
        old=record.decision,
        new=None,
    )
    try:
        if record.verdict is None:
            raise NotReplayableError("it has not finished")
        verdict = rejudge(record.verdict, policy, tables=tables)
    except NotReplayableError as e:
        return dataclasses.replace(row, reason=str(e))
    except GateError as e:  # a table that cannot be read, say: this evaluation only
        return dataclasses.replace(row, reason=e.message)
    blocking = tuple(f"{r.id}: {r.message}" for r in verdict.rules if r.blocks or r.status is Status.ERROR)
    return dataclasses.replace(
        row,
        new=verdict.decision.value,
        blocking=blocking,
        changed=_changed(record.verdict.get("rules") or [], verdict.rules),
    )


def replay_records(
    records: Iterable[EvaluationRecord], policy: Policy, *, tables: TableSource | None = None
) -> ReplayReport:
    """Replay ``policy`` over ``records`` (as listed: newest first)."""
    return ReplayReport(
        policy={"name": policy.name, "sha256": policy.sha256, "source": policy.source},
        rows=[replay_record(r, policy, tables=tables) for r in records],
    )


# -- from an audit log ---------------------------------------------------------------------------


def parse_since(text: str) -> str:
    """``--since``: a date (from its midnight, UTC) or an ISO 8601 time, as the audit
    log's timestamp text it is compared with."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise RequestError(f"since={text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _recorded(store: AuditLog, dataset: str | None, since: str | None, limit: int) -> Iterator[EvaluationRecord]:
    """The store's evaluations, newest first, page by page, down to ``since``."""
    after: str | None = None
    seen = 0
    while seen < limit:
        wanted = min(1000, limit - seen)
        page = store.list(dataset=dataset, limit=wanted, after=after)
        for record in page:
            if since is not None and record.created_at < since:
                return
            seen += 1
            yield record
        if len(page) < wanted:
            return
        after = page[-1].evaluation_id


def replay_store(
    store: AuditLog,
    policy: Policy,
    *,
    results: Any = None,
    dataset: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> ReplayReport:
    """Replay ``policy`` over the evaluations an audit log recorded (newest first, at
    most ``limit``, accepted at or after ``since``). ``results`` is the results cache
    (:class:`gate.cache.ResultCache`, or its directory) whose predictions tables rules may need."""
    count = limit or DEFAULT_LIMIT
    if count < 1:
        raise RequestError(f"limit={limit} is not valid; it should be >= 1")
    return replay_records(_recorded(store, dataset, since, count), policy, tables=table_source(results))


def table_source(results: Any) -> TableSource | None:
    """Tables from a results cache, ONNX Runtime imported only when one is asked for (the
    cache's keys name the runtime's version)."""
    if results is None:
        return None

    def find(model_sha256: str, dataset_sha256: str, provider: str) -> PredictionTable | None:
        from gate.cache import ResultCache, results_key

        cache = ResultCache(results) if isinstance(results, Path) else results
        table: PredictionTable | None = cache.get(results_key(model_sha256, dataset_sha256, provider))
        return table

    return find
