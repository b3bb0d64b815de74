"""The rules that judge whether a model can be served, not how accurate it is: its
serving contract (``model_contract``), what a request costs (``latency``, ``memory``) and
whether it answers alike on two execution providers or like its own full-precision
source (``provider_parity``).

They judge the records of :mod:`gate.deployment.evidence`, measured by
:mod:`gate.deployment` before the policy is applied (``RuleContext.deployment``); the
judging needs neither ONNX nor ONNX Runtime. See docs/deployment-checks.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from gate.policy.base import Count, Flag, Number, Rule, Text, register, suggest
from gate.policy.bounds import at_least, at_most, fmt_vs
from gate.policy.context import RuleContext
from gate.verdict import RuleResult, Status

if TYPE_CHECKING:
    from gate.deployment.evidence import LatencyRun, ModelDescription, TensorSpec

#: Element types a contract may name (numpy's spelling).
DTYPES = (
    "float32",
    "float16",
    "float64",
    "bfloat16",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "bool",
    "object",
)
#: The percentiles a ``latency`` rule may bound, and how many timed runs each gets: enough
#: that the percentile is an order statistic with at least 10 runs above it.
LATENCY_RUNS = {50: 100, 90: 300, 99: 1000}
MEGABYTE = 1_000_000


def _dim(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "dim_type",
            "Input should be a size (an integer) or a symbolic dimension name such as N, not {kind}",
            {"kind": type(value).__name__},
        )
    if isinstance(value, int) and value < 0:
        raise PydanticCustomError("dim_type", "a dimension size must not be negative")
    if isinstance(value, str) and not value.strip():
        # an empty name would stand for any symbolic dimension without saying which
        raise PydanticCustomError("dim_type", "a symbolic dimension needs a name (such as N), not an empty string")
    return value


Dimension = Annotated[int | str, BeforeValidator(_dim)]


class TensorContract(BaseModel):
    """One input or output the serving code relies on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    dtype: Text | None = None
    shape: list[Dimension] | None = None


def _shape(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "no declared shape"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _check(field: str, expected: Any, found: Any, ok: bool, message: str) -> dict[str, Any]:
    """One contract check: the field, what the contract expects, what the model has."""
    return {
        "field": field,
        "expected": expected,
        "found": found,
        "status": Status.PASS.value if ok else Status.FAIL.value,
        "message": message,
    }


def _dim_checks(where: str, expected: list[int | str], found: tuple[Any, ...]) -> list[dict[str, Any]]:
    out = []
    for i, (want, have) in enumerate(zip(expected, found, strict=True)):
        field = f"{where}.shape[{i}]"
        if isinstance(want, str) and isinstance(have, int):
            out.append(
                _check(field, want, have, False, f"{field}: expected a symbolic dimension ({want}), found fixed {have}")
            )
        elif isinstance(want, int) and have != want:
            shown = "a symbolic dimension" if isinstance(have, str) else "an unknown size" if have is None else have
            out.append(_check(field, want, have, False, f"{field}: expected {want}, found {shown}"))
    return out


def _tensor_checks(kind: str, i: int, want: TensorContract, have: TensorSpec) -> list[dict[str, Any]]:
    where = f"{kind}[{i}] '{have.name}'"
    out = []
    if want.dtype is not None:
        ok = have.dtype == want.dtype
        out.append(
            _check(
                f"{where}.dtype",
                want.dtype,
                have.dtype,
                ok,
                f"{where}.dtype: expected {want.dtype}, found {have.dtype}",
            )
        )
    if want.shape is not None:
        shown = _shape(want.shape)
        if have.shape is None or len(have.shape) != len(want.shape):
            text = f"{where}.shape: expected {shown}, found {_shape(have.shape)}"
            out.append(_check(f"{where}.shape", shown, _shape(have.shape), False, text))
        else:
            dims = _dim_checks(where, want.shape, have.shape)
            text = f"{where}.shape: {shown}"
            out += dims or [_check(f"{where}.shape", shown, _shape(have.shape), True, text)]
    return out


def _signature_checks(
    kind: str, wanted: list[TensorContract], declared: tuple[TensorSpec, ...]
) -> list[dict[str, Any]]:
    """Each tensor the contract names, found by name and compared; and any the model has
    that the contract does not name (serving code would not feed or read it)."""
    by_name = {t.name: t for t in declared}
    names = ", ".join(f"'{t.name}'" for t in declared) or "none"
    out = []
    renamed = False
    for i, want in enumerate(wanted):
        have = by_name.get(want.name)
        if have is None:
            renamed = True
            text = f"{kind}[{i}].name: expected '{want.name}', found {names}{suggest(want.name, by_name)}"
            out.append(_check(f"{kind}[{i}].name", want.name, [t.name for t in declared], False, text))
            # one tensor on each side: the same one renamed, whose type and shape still count
            have = declared[0] if len(wanted) == len(declared) == 1 else None
        else:
            out.append(_check(f"{kind}[{i}].name", want.name, have.name, True, f"{kind}[{i}].name: '{want.name}'"))
        if have is not None:
            out += _tensor_checks(kind, i, want, have)
    if renamed:
        return out  # the names the model has are in the message already
    expected_names = {w.name for w in wanted}
    for extra in (t for t in declared if t.name not in expected_names):
        text = f"{kind}: the model has {kind[:-1]} '{extra.name}', which the contract does not name"
        out.append(_check(kind, sorted(expected_names), extra.name, False, text))
    return out


def _class_metadata_check(raw: str | None, classes: Sequence[str] | None) -> dict[str, Any]:
    field = "metadata.classes"
    if raw is None:
        return _check(
            field,
            "a JSON list of class names",
            None,
            False,
            f"{field}: expected a JSON list of class names, found none",
        )
    try:
        declared = json.loads(raw)
    except json.JSONDecodeError:
        declared = None
    if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
        text = f"{field}: expected a JSON list of class names, found {raw[:80]!r}"
        return _check(field, "a JSON list of class names", raw[:200], False, text)
    if classes is None:
        return _check(field, None, declared, True, f"{field}: {declared} (no dataset to compare the order with)")
    want = list(classes)
    if declared == want:
        return _check(field, want, declared, True, f"{field}: the dataset's classes in the dataset's order")
    why = (
        " (the same names in another order: the model's outputs would be read as the wrong classes)"
        if sorted(declared) == sorted(want)
        else ""
    )
    text = f"{field}: expected the dataset's order [{', '.join(want)}], found [{', '.join(declared)}]{why}"
    return _check(field, want, declared, False, text)


@register
class ModelContractRule(Rule):
    """The model must have the interface its serving code expects."""

    type: Literal["model_contract"] = "model_contract"
    inputs: list[TensorContract] | None = None
    outputs: list[TensorContract] | None = None
    opset_max: dict[Text, Count] | None = None
    max_size_mb: Number | None = Field(default=None, gt=0.0)
    require_class_metadata: Flag = False
    onnx_checker: Flag = True
    catches: ClassVar[str] = (
        "a model the serving code cannot call: a renamed or reshaped input, another dtype, a fixed batch,"
        " an opset the runtime lacks, a file too large, class metadata in another order"
    )

    def problems(self) -> list[str]:
        out = []
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for i, t in enumerate(tensors or []):
                if t.dtype is not None and t.dtype not in DTYPES:
                    out.append(
                        f"{kind}[{i}].dtype: unknown element type '{t.dtype}'{suggest(t.dtype, DTYPES)};"
                        f" known: {', '.join(DTYPES)}"
                    )
        for domain, version in (self.opset_max or {}).items():
            if version < 1:
                out.append(f"opset_max['{domain}']: {version} is not an opset version (versions start at 1)")
        if self.opset_max is not None and {"", "ai.onnx"} <= self.opset_max.keys():
            out.append("opset_max names the default domain twice ('' and 'ai.onnx' are one domain): keep one")
        checked = [self.inputs, self.outputs, self.opset_max, self.max_size_mb]
        if all(c is None for c in checked) and not (self.require_class_metadata or self.onnx_checker):
            out.append(
                "checks nothing: give `inputs`, `outputs`, `opset_max`, `max_size_mb`,"
                " `require_class_metadata: true` or `onnx_checker: true`"
            )
        return out

    def judge(self, model: ModelDescription, classes: Sequence[str] | None) -> RuleResult:
        """The contract checked against a model's description; ``classes``: the dataset's
        classes in order, or None when there is no dataset."""
        checks = _signature_checks("inputs", self.inputs or [], model.inputs) if self.inputs is not None else []
        if self.outputs is not None:
            checks += _signature_checks("outputs", self.outputs, model.outputs)
        checks += self._opset_checks(model.opsets)
        if self.max_size_mb is not None:
            size = model.size_bytes / MEGABYTE
            f, m = fmt_vs(size, self.max_size_mb)
            ok = at_most(size, self.max_size_mb)
            checks.append(
                _check("max_size_mb", self.max_size_mb, size, ok, f"size: {f} MB {'<=' if ok else '>'} {m} MB")
            )
        if self.require_class_metadata:
            checks.append(_class_metadata_check(model.metadata_classes, classes))
        if self.onnx_checker:
            err = model.checker_error
            text = "onnx.checker (full_check): " + ("no error" if err is None else f"expected no error, found: {err}")
            checks.append(_check("onnx_checker", "no error", err, err is None, text))
        failed = [c for c in checks if c["status"] != Status.PASS.value]
        details = {"checks": checks}
        if failed:
            head = f"{len(failed)} of {len(checks)} contract checks failed: "
            return self.result(Status.FAIL, head + "; ".join(c["message"] for c in failed), details=details)
        return self.result(Status.PASS, f"the model meets its contract ({len(checks)} checks)", details=details)

    def _opset_checks(self, opsets: dict[str, int]) -> list[dict[str, Any]]:
        out = []
        for domain, ceiling in (self.opset_max or {}).items():
            key = "" if domain == "ai.onnx" else domain
            shown = domain or "ai.onnx"
            found = opsets.get(key)
            ok = found is None or found <= ceiling
            text = (
                f"opset_max['{shown}']: the model does not import this domain"
                if found is None
                else f"opset_max['{shown}']: expected <= {ceiling}, found {found}"
            )
            out.append(_check(f"opset_max['{shown}']", ceiling, found, ok, text))
        return out

    def check(self, context: RuleContext) -> RuleResult:
        evidence = context.deployment
        if evidence is None or evidence.model is None:
            return self.result(Status.ERROR, "the model's description was not read")
        return self.judge(evidence.model, context.metrics.classes)


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


@register
class LatencyRule(Rule):
    """A percentile of the time one request takes, absolute and / or relative to the
    champion timed in the same run."""

    type: Literal["latency"] = "latency"
    batch: Count = Field(default=1, ge=1, le=65536)
    percentile: Count = 90
    max_ms: Number | None = Field(default=None, gt=0.0)
    max_vs_baseline: Number | None = Field(default=None, gt=0.0)
    threads: Count = Field(default=1, ge=1, le=256)
    catches: ClassVar[str] = "a model too slow to serve, or much slower than the one in production"

    def problems(self) -> list[str]:
        out = []
        if self.percentile not in LATENCY_RUNS:
            out.append(f"percentile {self.percentile} is not measured; use one of {', '.join(map(str, LATENCY_RUNS))}")
        if self.max_ms is None and self.max_vs_baseline is None:
            out.append("needs `max_ms`, `max_vs_baseline` or both")
        return out

    @property
    def runs(self) -> int:
        return LATENCY_RUNS.get(self.percentile, max(LATENCY_RUNS.values()))

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch": self.batch, "percentile": self.percentile, "threads": self.threads}
        for key in ("max_ms", "max_vs_baseline"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def check(self, context: RuleContext) -> RuleResult:
        run = context.deployment.latency.get(self.id) if context.deployment is not None else None
        if run is None:
            return self.result(Status.ERROR, "the latency was not measured", threshold=self._threshold())
        return self.judge(run)

    def judge(self, run: LatencyRun) -> RuleResult:
        key = f"p{self.percentile}"
        mine = run.candidate_ms[key]
        how = (
            f" ({run.runs} timed runs after {run.warmup} warm-up, {run.threads} thread(s),"
            f" {run.provider} on {run.device})"
        )
        head = f"{key} latency at batch {run.batch}: {_ms(mine)}"
        broken: list[str] = []
        kept: list[str] = []
        if self.max_ms is not None:
            f, m = fmt_vs(mine, self.max_ms)
            over = not at_most(mine, self.max_ms)
            (broken if over else kept).append(f"{f} ms {'>' if over else '<='} {m} ms")
        ratio = None
        if self.max_vs_baseline is not None:
            if run.champion_ms is None:
                return self.result(Status.ERROR, "no champion was timed", threshold=self._threshold())
            theirs = run.champion_ms[key]
            ratio = mine / theirs if theirs > 0 else float("inf")
            r, m = fmt_vs(ratio, self.max_vs_baseline)
            over = not at_most(ratio, self.max_vs_baseline)
            text = f"champion {_ms(theirs)} (interleaved): ratio {r} {'>' if over else '<='} {m}"
            (broken if over else kept).append(text)
        status = Status.FAIL if broken else Status.PASS
        message = f"{head}; " + "; ".join(broken or kept) + how
        return self.result(status, message, observed=mine, threshold=self._threshold(), details={"ratio": ratio})


@register
class MemoryRule(Rule):
    """What one session of the model holds in memory, and the size of its file."""

    type: Literal["memory"] = "memory"
    batch: Count = Field(default=1, ge=1, le=65536)
    max_rss_mb: Number | None = Field(default=None, gt=0.0)
    max_gpu_mb: Number | None = Field(default=None, gt=0.0)
    max_size_mb: Number | None = Field(default=None, gt=0.0)
    catches: ClassVar[str] = "a model that needs more memory (host or GPU) or disk than the serving machine has"

    def problems(self) -> list[str]:
        if self.max_rss_mb is None and self.max_gpu_mb is None and self.max_size_mb is None:
            return ["needs `max_rss_mb`, `max_gpu_mb` or `max_size_mb` (or several)"]
        return []

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch": self.batch}
        for key in ("max_rss_mb", "max_gpu_mb", "max_size_mb"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def check(self, context: RuleContext) -> RuleResult:
        use = context.deployment.memory.get(self.id) if context.deployment is not None else None
        if use is None:
            return self.result(Status.ERROR, "the memory use was not measured", threshold=self._threshold())
        bounds = [("peak RSS", use.rss_mb, self.max_rss_mb), ("model size", use.size_mb, self.max_size_mb)]
        if self.max_gpu_mb is not None:
            if use.gpu_mb is None:
                why = f"GPU memory not measured: {use.gpu_note or 'unknown reason'}"
                return self.result(Status.INCONCLUSIVE, why, threshold=self._threshold(), details=use.to_dict())
            bounds.append(("GPU memory", use.gpu_mb, self.max_gpu_mb))
        broken: list[str] = []
        kept: list[str] = []
        for label, value, ceiling in bounds:
            if ceiling is None:
                continue
            v, m = fmt_vs(value, ceiling)
            over = not at_most(value, ceiling)
            (broken if over else kept).append(f"{label} {v} MB {'>' if over else '<='} {m} MB")
        where = f" (batch {use.batch}, {use.provider}, one session in a process of its own)"
        status = Status.FAIL if broken else Status.PASS
        return self.result(
            status, "; ".join(broken or kept) + where, threshold=self._threshold(), details=use.to_dict()
        )


@register
class ProviderParityRule(Rule):
    """The model must answer alike on the CPU and CUDA providers, or (with ``reference``)
    like the model it was converted from (an FP16 or quantized candidate vs its FP32 source)."""

    type: Literal["provider_parity"] = "provider_parity"
    reference: Text | None = Field(default=None, min_length=1)
    max_disagreement: Number = Field(ge=0.0, le=1.0)
    max_prob_diff: Number | None = Field(default=None, ge=0.0, le=1.0)
    catches: ClassVar[str] = (
        "a model whose answers change with the execution provider, or with the precision it was converted to"
    )

    def vacuous(self) -> str | None:
        if at_least(self.max_disagreement, 1.0) and (self.max_prob_diff is None or at_least(self.max_prob_diff, 1.0)):
            return "a disagreement rate cannot exceed 1 and a probability difference cannot exceed 1"
        return None

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_disagreement": self.max_disagreement}
        if self.max_prob_diff is not None:
            out["max_prob_diff"] = self.max_prob_diff
        if self.reference is not None:
            out["reference"] = self.reference
        return out

    def check(self, context: RuleContext) -> RuleResult:
        run = context.deployment.parity.get(self.id) if context.deployment is not None else None
        if run is None:
            return self.result(Status.ERROR, "the comparison was not run", threshold=self._threshold())
        if run.unavailable is not None:
            return self.result(Status.INCONCLUSIVE, run.unavailable, threshold=self._threshold(), details=run.to_dict())
        d, m = fmt_vs(run.disagreement, self.max_disagreement)
        over = not at_most(run.disagreement, self.max_disagreement)
        parts = [f"{run.disagreements} of {run.samples} samples ({d}) change class {'>' if over else '<='} {m}"]
        broken = over
        if self.max_prob_diff is not None:
            p, q = fmt_vs(run.max_prob_diff, self.max_prob_diff)
            worse = not at_most(run.max_prob_diff, self.max_prob_diff)
            broken = broken or worse
            parts.append(f"largest probability difference {p} {'>' if worse else '<='} {q}")
        else:
            parts.append(f"largest probability difference {run.max_prob_diff:.3g}")
        message = f"{run.left} vs {run.right}: " + "; ".join(parts)
        status = Status.FAIL if broken else Status.PASS
        return self.result(
            status, message, observed=run.disagreement, threshold=self._threshold(), details=run.to_dict()
        )


def deployment_problems(rules: Sequence[Rule], *, has_baseline: bool, references: Sequence[str]) -> list[str]:
    """What a request lacks for the policy's deployment rules: a champion for
    ``max_vs_baseline``, a reference model for ``provider_parity`` with ``reference``."""
    missing = []
    for rule in rules:
        if isinstance(rule, LatencyRule) and rule.max_vs_baseline is not None and not has_baseline:
            missing.append(
                f"rule '{rule.id}' (latency) needs a champion to time against for max_vs_baseline"
                " (`--baseline CHAMPION.onnx`; API: baseline_sha256)"
            )
        if isinstance(rule, ProviderParityRule) and rule.reference is not None and rule.reference not in references:
            missing.append(
                f"rule '{rule.id}' (provider_parity) needs its reference model '{rule.reference}'"
                " (a file beside the policy for `gate eval`; `gate check --reference FILE` or NAME=FILE;"
                " API: reference_sha256)"
            )
    return missing


def reference_names(rules: Sequence[Rule]) -> set[str]:
    """The reference models the policy's ``provider_parity`` rules name."""
    return {r.reference for r in rules if isinstance(r, ProviderParityRule) and r.reference is not None}
