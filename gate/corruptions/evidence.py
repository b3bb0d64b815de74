"""The robustness step of an evaluation: the suites the policy's ``robustness`` rules ask
for (one per seed, the union of their cells), each run once per model on the dataset's
corrupted view (:mod:`gate.corruptions.suite`), the tables split back into one per cell,
and the verdict's ``metrics.robustness``:

``metrics.robustness[corruption][severity]`` holds the candidate's ``accuracy``,
``error`` and per-class ``recall`` in that cell (severity as a string key, as JSON
needs); ``metrics.robustness_summary`` the seed, the clean error, the
``mean_corruption_error`` over all cells and, with a champion, ``mce`` and
``relative_mce`` (see :func:`gate.policy.robustness_rules.mean_corruption_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gate.corruptions.suite import Cell, Suite, corrupted_view
from gate.datasets import Dataset
from gate.policy import Policy
from gate.policy.context import RobustnessRun, RuleContext
from gate.policy.robustness_rules import RobustnessRule, mean_corruption_error, top1_error
from gate.predictions import PredictionTable

if TYPE_CHECKING:
    from gate.cache import Caches

M = TypeVar("M")
#: Runs a model over a dataset and answers its predictions table.
RunFn = Callable[[M, Dataset], PredictionTable]


def suites(pol: Policy) -> dict[int, Suite]:
    """One suite per seed: every cell any robustness rule with that seed judges, sorted."""
    cells: dict[int, set[Cell]] = {}
    for rule in pol.rules:
        if isinstance(rule, RobustnessRule):
            cells.setdefault(rule.seed, set()).update(Cell(c, s) for c, s in rule.cells())
    return {seed: Suite(tuple(sorted(found)), seed) for seed, found in sorted(cells.items())}


def split(table: PredictionTable, clean: PredictionTable, suite: Suite) -> dict[tuple[str, int], PredictionTable]:
    """The view's table cut into one table per cell, rows and sample ids as in the clean set."""
    n = len(suite.cells)
    out = {}
    for j, cell in enumerate(suite.cells):
        rows = np.arange(j, len(table), n)
        out[(cell.corruption, cell.severity)] = PredictionTable(
            classes=table.classes,
            sample_id=clean.sample_id,
            label=table.label[rows],
            predicted=table.predicted[rows],
            confidence=table.confidence[rows],
            top_k_class=table.top_k_class[rows],
            top_k_score=table.top_k_score[rows],
        )
    return out


def run_suites(
    pol: Policy,
    ds: Dataset,
    run: RunFn[M],
    models: tuple[tuple[M, PredictionTable], tuple[M, PredictionTable] | None],
    *,
    cache_root: Path | None,
) -> tuple[dict[str, Any], dict[int, RobustnessRun]]:
    """The verdict's robustness metrics and the rules' evidence. ``models`` is the candidate
    and the champion (or None), each with its table on the clean set; ``run`` runs a model
    on a dataset (the engine the evaluation uses)."""
    (candidate, clean), champion = models
    runs: dict[int, RobustnessRun] = {}
    for seed, suite in suites(pol).items():
        view = corrupted_view(ds, suite, cache_root)
        cells = split(run(candidate, view), clean, suite)
        theirs = None if champion is None else split(run(champion[0], view), champion[1], suite)
        runs[seed] = RobustnessRun(seed, clean, cells, None if champion is None else champion[1], theirs)
    section = robustness_metrics(runs)
    # how the pixels were made, so that a report can show the corrupted images again
    section["robustness_summary"]["images"] = {
        "source": str(ds.source_path),
        "preprocess": ds.spec.preprocess.model_dump(mode="json") if ds.spec.preprocess is not None else None,
    }
    return section, runs


def robustness_metrics(runs: dict[int, RobustnessRun]) -> dict[str, Any]:
    """``metrics.robustness`` and ``metrics.robustness_summary`` for the first seed's run
    (the one a policy with a single seed has); further seeds are listed in the summary."""
    seed, run = next(iter(runs.items()))
    section: dict[str, dict[str, Any]] = {}
    for (corruption, severity), table in sorted(run.cells.items()):
        metrics = table.metrics()
        section.setdefault(corruption, {})[str(severity)] = {
            "accuracy": metrics.value("accuracy"),
            "error": top1_error(table),
            "recall": {m.name: m.recall for m in metrics.per_class},
        }
    corruptions = sorted(section)
    severities = sorted({s for _, s in run.cells})
    complete = all((c, s) in run.cells for c in corruptions for s in severities)
    summary: dict[str, Any] = {"seed": seed, "clean_error": top1_error(run.clean)}
    if complete:
        summary.update(mean_corruption_error(run, corruptions, severities))
    if len(runs) > 1:
        summary["other_seeds"] = sorted(runs)[1:]
    return {"robustness": section, "robustness_summary": summary}


def robustness_step(
    metrics: dict[str, Any],
    pol: Policy,
    ds: Dataset,
    context: RuleContext,
    run: RunFn[Any],
    runs: tuple[Any, Any | None],
    *,
    caches: Caches,
) -> RuleContext:
    """The evaluation's robustness step: ``runs`` are the candidate's and the champion's
    clean runs (``model`` and ``table``); their robustness metrics go into ``metrics``, the
    evidence into the returned context. Corrupted pixels are cached next to the clean
    tensor cache, when there is one."""
    candidate, champion = runs
    root = caches.tensors.root.parent / "corrupted" if caches.tensors is not None else None
    theirs = None if champion is None else (champion.model, champion.table)
    section, evidence = run_suites(pol, ds, run, ((candidate.model, candidate.table), theirs), cache_root=root)
    metrics.update(section)
    return replace(context, robustness=evidence)
