"""The evaluation's held-out step: what the policy's held-out rules need, computed from
the predictions tables already made (no second inference pass) and, for duplicates, from
the set's perceptual hashes (the hash cache's, shared with ``leakage`` rules).

:func:`audit_heldout` is called once by :mod:`gate.evaluation`, after the candidate's
(and the champion's) tables are known and before the rules are judged. It returns what
the verdict gains, and leaves the verdict's fields untouched for a policy that names none
of these rules, so earlier verdicts read as they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gate.errors import DatasetError
from gate.heldout.top_k import names_top_k, top_k_section
from gate.metrics import GLOBAL_METRICS
from gate.policy.context import RuleContext
from gate.policy.heldout_rules import HeldoutDuplicatesRule
from gate.verdict import Severity

# the audits' own modules (and the perceptual hashes' Pillow) are imported where a rule asks for them
if TYPE_CHECKING:
    from gate.cache import Caches
    from gate.datasets import Dataset
    from gate.heldout.duplicates import DuplicateAudit
    from gate.heldout.evidence import DecisionMargin
    from gate.policy import Policy
    from gate.predictions import PredictionTable


@dataclass(frozen=True)
class HeldoutFindings:
    """What the step adds: the rules' context, entries of ``verdict.metrics`` and of
    ``verdict.dataset_audit`` (empty when the policy asks for none)."""

    context: RuleContext
    metrics: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)


def audit_heldout(
    policy: Policy, ds: Dataset, context: RuleContext, champion: PredictionTable | None, caches: Caches
) -> HeldoutFindings:
    """The held-out evidence ``policy`` asks for (see the module docstring)."""
    table = context.table
    if table is None:
        return HeldoutFindings(context)
    types = {rule.type for rule in policy.rules}
    metrics: dict[str, Any] = {}
    if names_top_k({str(getattr(rule, "metric", "")) for rule in policy.rules}):
        metrics["top_k"] = top_k_section(table)
    if "selective" in types:
        from gate.heldout.selective import risk_coverage

        metrics["risk_coverage"] = risk_coverage(table.confidence, table.correct)
    if not types & {"label_quality", "heldout_duplicates"}:
        return HeldoutFindings(context, metrics)
    from gate.heldout.evidence import HeldoutEvidence
    from gate.heldout.label_audit import audit_labels
    from gate.heldout.thumbnails import add_thumbnails

    radii = sorted({r.max_hamming for r in policy.rules if isinstance(r, HeldoutDuplicatesRule)})
    evidence = HeldoutEvidence(
        sample_ids=tuple(str(s) for s in table.sample_id),
        classes=table.classes,
        labels=audit_labels(table, champion) if "label_quality" in types else None,
        duplicates=_duplicates(ds, table, radii, caches),
        margins=decision_margins(policy, context),
    )
    audit = evidence.to_dict()
    source = ds.pixel_source
    if source is not None:  # image files: the report shows the first entries' images
        add_thumbnails(audit, {name: path for path, name, _ in source.stored_files()})
    return HeldoutFindings(replace(context, heldout=evidence), metrics, audit)


def _duplicates(ds: Dataset, table: PredictionTable, radii: list[int], caches: Caches) -> dict[int, DuplicateAudit]:
    if not radii:
        return {}
    from gate.heldout.duplicates import find_duplicates
    from gate.leakage import HASH_ALGORITHM, HASH_ALGORITHM_VERSION, hash_dataset

    algorithm = f"{HASH_ALGORITHM}-{HASH_ALGORITHM_VERSION}"
    try:
        hashes = caches.hashes.hashes(ds, algorithm, hash_dataset) if caches.hashes is not None else hash_dataset(ds)
    except DatasetError as e:  # the hashes leakage rules use too: say which rule needed them here
        if ds.pixel_source is None:  # tensors that are not images
            raise DatasetError(
                f"heldout_duplicates rules compare the held-out images by perceptual hash, and dataset '{ds.name}'"
                f" holds samples of shape {tuple(ds.sample_shape)}, which are not images ((H, W), (H, W, C) or"
                " (C, H, W) with C in 1, 3, 4)"
            ) from e
        e.message = f"heldout_duplicates rules compare the held-out images by perceptual hash: {e.message}"
        e.args = (e.message,)
        raise
    return {radius: find_duplicates(hashes, table.label, radius) for radius in radii}


def decision_margins(policy: Policy, context: RuleContext) -> tuple[DecisionMargin, ...]:
    """The distance of each blocking ``metric`` rule's value (a share of samples, range [0, 1]) from
    each of its bounds: the margins a verdict's PASS or FAIL rests on."""
    from gate.heldout.evidence import DecisionMargin

    out = []
    for rule in policy.rules:
        if rule.severity is not Severity.BLOCK:  # a warning decides nothing
            continue
        metric = getattr(rule, "metric", None)
        info = GLOBAL_METRICS.get(metric) if rule.type == "metric" and isinstance(metric, str) else None
        if info is None or info.low < 0.0 or info.high > 1.0:
            continue
        value = context.metrics.value(info.name)
        for side in ("min", "max"):
            bound = getattr(rule, side, None)
            if value is not None and isinstance(bound, float | int):
                out.append(DecisionMargin(rule.id, info.name, value, float(bound), side))
    return tuple(out)
