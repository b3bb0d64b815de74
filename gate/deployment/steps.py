"""The deployment checks' part of an evaluation (:mod:`gate.evaluation` calls these):

1. before inference, the model file is described (:func:`describe`) and its contract
   checked (:func:`contract_stop`): a model that breaks a blocking contract is not run;
   its verdict is FAIL with each failed check, and the other rules are inconclusive;
2. after inference, what the policy's ``latency``, ``memory`` and ``provider_parity``
   rules ask for is measured (:func:`measure`), on the evaluation's provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.engines.base import ModelInput, read_model
from gate.policy.deployment_rules import (
    LatencyRule,
    MemoryRule,
    ModelContractRule,
    ProviderParityRule,
    reference_names,
)
from gate.verdict import RuleResult, Status

if TYPE_CHECKING:
    from gate.datasets import Dataset
    from gate.deployment.evidence import DeploymentEvidence, LatencyRun, MemoryUse, ModelDescription, ParityRun
    from gate.policy import Policy
    from gate.providers import Provider

ModelSource = bytes | str | os.PathLike[str]
_MEASURED = (ModelContractRule, LatencyRule, MemoryRule, ProviderParityRule)


@dataclass(frozen=True)
class PinnedModel:
    """A model file and the SHA-256 its bytes must have: a stored model the service hands
    its worker by path (never by bytes), checked as it is read."""

    path: str
    sha256: str


#: How a caller gives a reference model: its bytes, its path, or a stored file and its hash.
ReferenceSource = ModelSource | PinnedModel


def describe(pol: Policy, model: ModelInput) -> ModelDescription | None:
    """The model file's description, when a rule of the policy judges it."""
    if not any(isinstance(r, ModelContractRule) for r in pol.rules):
        return None
    from gate.deployment.contract import describe_model

    return describe_model(model.data, model.source)


def contract_stop(pol: Policy, model: ModelDescription | None, classes: list[str]) -> list[RuleResult] | None:
    """The results of an evaluation stopped by a broken contract, or None to go on."""
    if model is None:
        return None
    judged = {r.id: r.judge(model, classes) for r in pol.rules if isinstance(r, ModelContractRule)}
    broken = [rid for rid, result in judged.items() if result.blocks]
    if not broken:
        return None
    why = f"not evaluated: the model breaks its contract (rule {', '.join(repr(b) for b in broken)}), so it was not run"
    return [judged.get(rule.id) or rule.result(Status.INCONCLUSIVE, why) for rule in pol.rules]


def reference_sources(pol: Policy, given: Mapping[str, ReferenceSource] | None) -> dict[str, ReferenceSource]:
    """The reference model of each ``provider_parity`` rule that names one: as the caller
    gives it, else the file of that name beside the policy file (never for an inline policy)."""
    given = given or {}
    beside = Path(pol.source).parent if pol.source != "<inline>" else None
    found: dict[str, ReferenceSource] = {}
    for rule in pol.rules:
        name = rule.reference if isinstance(rule, ProviderParityRule) else None
        if name is None:
            continue
        if name in given:
            found[name] = given[name]
        elif beside is not None:
            found[name] = beside / name
    return found


def _read_references(pol: Policy, references: Mapping[str, ReferenceSource]) -> dict[str, ModelInput]:
    """Each reference model the rules name, read once and hashed once (rules naming the
    same reference share it); a pinned one must have the SHA-256 it was stored under."""
    models = {}
    for name in sorted(reference_names(pol.rules)):
        source = references[name]
        if isinstance(source, PinnedModel):
            models[name] = read_model(source.path, "reference model", name, source.sha256)
        else:
            models[name] = read_model(source, "reference model", name, None)
    return models


def _sample(ds: Dataset, batch: int) -> npt.NDArray[Any]:
    """The set's first ``batch`` samples (repeated when the set is smaller): real inputs."""
    first = np.asarray(next(iter(ds.batches(batch))))
    reps = -(-batch // len(first))
    return np.concatenate([first] * reps)[:batch] if reps > 1 else first


def measure(
    pol: Policy,
    model: ModelDescription | None,
    runs: tuple[ModelInput, ModelInput | None],
    ds: Dataset,
    *,
    provider: Provider,
    references: Mapping[str, ReferenceSource],
) -> DeploymentEvidence | None:
    """What the policy's deployment rules judge; ``runs``: the candidate and the champion."""
    if not any(isinstance(r, _MEASURED) for r in pol.rules):
        return None
    from gate.deployment.evidence import DeploymentEvidence
    from gate.deployment.memory import measure_memory
    from gate.deployment.parity import compare_providers, compare_reference
    from gate.deployment.timing import LatencyPlan, measure_latency

    candidate, champion = runs
    latency: dict[str, LatencyRun] = {}
    memory: dict[str, MemoryUse] = {}
    parity: dict[str, ParityRun] = {}
    models = _read_references(pol, references)
    for rule in pol.rules:
        if isinstance(rule, LatencyRule):
            plan = LatencyPlan(rule.batch, rule.threads, rule.runs)
            timed = champion if rule.max_vs_baseline is not None else None
            latency[rule.id] = measure_latency(candidate, timed, _sample(ds, rule.batch), plan, provider=provider)
        elif isinstance(rule, MemoryRule):
            memory[rule.id] = measure_memory(candidate, _sample(ds, rule.batch), provider=provider)
        elif isinstance(rule, ProviderParityRule) and rule.reference is None:
            parity[rule.id] = compare_providers(candidate, ds)
        elif isinstance(rule, ProviderParityRule) and rule.reference is not None:
            parity[rule.id] = compare_reference(candidate, models[rule.reference], ds, provider=provider)
    return DeploymentEvidence(model, latency, memory, parity)
