"""The evidence beyond the candidate's own metrics, read from a verdict for every report:
the champion-vs-challenger comparison (``verdict.baseline``), the training sample
(``verdict.train_sample``), the near-duplicates a ``leakage`` rule found, and the
calibration bins behind the ECE.

Everything here is data and wording; each renderer lays it out in its own format, so
the text, Markdown and HTML reports state the same numbers in the same words. A verdict
read back from JSON may come from an older gate or lack a field: every reader here
treats a missing or malformed value as unknown, never as an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gate.metrics import GLOBAL_METRICS
from gate.verdict import RuleResult, Severity, Status, Verdict

#: Metrics compared side by side (champion vs challenger, training sample vs held-out).
COMPARED: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro F1"),
    ("ece", "ECE (lower is better)"),
)

#: The per-class metric compared between champion and challenger.
CLASS_METRIC = "recall"

#: How many near-duplicate pairs the text and Markdown reports list under a leakage rule.
MAX_LEAK_EXAMPLES = 10

#: The significance level McNemar's test is read at when no baseline rule sets one.
DEFAULT_ALPHA = 0.05

MINUS = "\u2212"


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def signed(value: Any, digits: int = 3) -> str:
    """A difference with its sign (``+0.012``, ``−0.067``); ``0.000`` when it rounds to zero."""
    v = _num(value)
    if v is None:
        return "n/a"
    text = f"{abs(v):.{digits}f}"
    if float(text) == 0.0:
        return text
    return ("+" if v > 0 else MINUS) + text


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _label(key: str) -> str:
    return dict(COMPARED).get(key, key.replace("_", " "))


def _higher_is_better(key: str) -> bool:
    info = GLOBAL_METRICS.get(key)
    return True if info is None else info.higher_is_better


@dataclass(frozen=True)
class MetricRow:
    """One metric, before and after: ``change`` is ``after − before``."""

    key: str
    label: str
    before: float | None
    after: float | None
    change: float | None
    higher_is_better: bool
    failed: Severity | None = None  # the severity of a rule on this comparison that did not pass

    @property
    def worse(self) -> bool:
        """The change goes the wrong way for this metric."""
        if self.change is None or self.change == 0:
            return False
        return (self.change < 0) == self.higher_is_better


def _rows(
    before: dict[str, Any], after: dict[str, Any], keys: list[str], failures: dict[str, Severity]
) -> list[MetricRow]:
    out = []
    for key in keys:
        b, a = _num(before.get(key)), _num(after.get(key))
        if key == "ece" and b is None and a is None:
            continue  # no confidences on either side: nothing to compare
        out.append(MetricRow(key, _label(key), b, a, _difference(b, a), _higher_is_better(key), failures.get(key)))
    return out


# --- champion vs challenger ----------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """The paired right/wrong table of the two models on the same samples. The diagonal
    (both right, both wrong) is derived from the two confusion matrices; None when they
    do not add up with the discordant counts."""

    both_right: int | None
    challenger_worse: int  # champion right, challenger wrong
    challenger_better: int  # champion wrong, challenger right
    both_wrong: int | None
    p_value: float | None

    @property
    def discordant(self) -> int:
        return self.challenger_worse + self.challenger_better


@dataclass(frozen=True)
class ClassChange:
    name: str
    before: float | None  # the champion's value
    after: float | None  # the challenger's value
    change: float | None
    failed: Severity | None  # a per-class baseline rule on this metric did not pass for the class


@dataclass(frozen=True)
class Comparison:
    """What the reports say about the champion (``verdict.baseline``)."""

    path: str | None
    sha256: str | None
    size: int | None
    rows: list[MetricRow]
    class_metric: str
    classes: list[ClassChange]
    interval: str | None  # the paired-bootstrap sentence
    interval_reading: str | None  # what the interval says, in words
    paired: Paired | None
    mcnemar_reading: str | None
    champion_bins: list[Bin] | None  # the champion's reliability diagram, when its confidences are known
    champion_ece: float | None


def _trace(metrics: dict[str, Any]) -> int | None:
    matrix = metrics.get("confusion_matrix")
    if not isinstance(matrix, list):
        return None
    total = 0
    for i, row in enumerate(matrix):
        if not isinstance(row, list) or i >= len(row) or _int(row[i]) is None:
            return None
        total += row[i]
    return total


def _paired(v: Verdict, mcnemar: dict[str, Any], champion: dict[str, Any]) -> Paired | None:
    worse, better = _int(mcnemar.get("challenger_worse")), _int(mcnemar.get("challenger_better"))
    if worse is None or better is None:
        return None
    both_right = both_wrong = None
    n = _int((v.metrics or {}).get("samples"))
    champion_right, challenger_right = _trace(champion), _trace(v.metrics or {})
    if n is not None and champion_right is not None and challenger_right is not None:
        right = champion_right - worse
        wrong = n - champion_right - better
        if right >= 0 and wrong >= 0 and right + better == challenger_right:
            both_right, both_wrong = right, wrong
    return Paired(both_right, worse, better, both_wrong, _num(mcnemar.get("p_value")))


def mcnemar_alpha(v: Verdict) -> float:
    """The level of the first ``baseline`` rule that runs McNemar's test, else 5%."""
    for r in v.rules:
        if r.type == "baseline" and r.threshold.get("test") == "mcnemar":
            alpha = _num(r.threshold.get("alpha"))
            if alpha is not None and 0 < alpha < 1:
                return alpha
    return DEFAULT_ALPHA


def percent(share: float) -> str:
    """0.95 -> ``95%``, 0.975 -> ``97.5%``."""
    return f"{share * 100:.6g}%"


def p_value(p: float) -> str:
    return f"{p:.3g}"


def mcnemar_words(paired: Paired, alpha: float) -> str:
    """McNemar's exact test in words, for people who do not read p-values daily."""
    w, b = paired.challenger_worse, paired.challenger_better
    if paired.discordant == 0:
        return (
            "McNemar's exact test: the two models are right and wrong on exactly the same samples,"
            " so nothing tells them apart (p = 1)."
        )
    head = (
        f"McNemar's exact test weighs the {paired.discordant} sample{'s' if paired.discordant != 1 else ''}"
        f" the models disagree on: the challenger is wrong on {w} the champion gets right"
        f" and right on {b} the champion gets wrong."
    )
    if paired.p_value is None:
        return head
    p = paired.p_value
    chance = (
        "would almost never happen by chance"
        if p < 0.001
        else "would rarely happen by chance"
        if p < alpha
        else "is common"
    )
    level = percent(alpha)
    if p < alpha and w != b:
        which = "worse" if w > b else "better"
        tail = f"the challenger is significantly {which} than the champion at the {level} level"
    else:
        tail = f"the difference is within noise at the {level} level"
    return (
        f"{head} Two-sided p = {p_value(p)}: a split this uneven {chance} if both models were equally good, so {tail}."
    )


def interval_sentence(diff: dict[str, Any]) -> str | None:
    """``accuracy difference −0.067, 95% interval [−0.087, −0.047], paired bootstrap,
    10,000 resamples, seed 0`` (challenger minus champion)."""
    d, low, high = _num(diff.get("difference")), _num(diff.get("low")), _num(diff.get("high"))
    if d is None or low is None or high is None:
        return None
    parts = [f"accuracy difference {signed(d)}"]
    confidence = _num(diff.get("confidence"))
    level = f"{percent(confidence)} interval" if confidence is not None else "interval"
    parts.append(f"{level} [{signed(low)}, {signed(high)}]")
    parts.append("paired bootstrap")
    resamples, seed = _int(diff.get("resamples")), _int(diff.get("seed"))
    if resamples is not None:
        parts.append(f"{resamples:,} resamples")
    if seed is not None:
        parts.append(f"seed {seed}")
    return ", ".join(parts)


def interval_words(diff: dict[str, Any]) -> str | None:
    low, high = _num(diff.get("low")), _num(diff.get("high"))
    if low is None or high is None:
        return None
    if high < 0:
        return "The whole interval lies below zero: the challenger is less accurate than the champion."
    if low > 0:
        return "The whole interval lies above zero: the challenger is more accurate than the champion."
    return "The interval includes zero: no clear difference in accuracy."


def _baseline_class_failures(v: Verdict, metric: str) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for r in v.rules:
        if r.type != "baseline" or r.threshold.get("metric") != metric or not r.threshold.get("per_class"):
            continue
        for c in r.classes:
            if c.status is not Status.PASS and out.get(c.name) is not Severity.BLOCK:
                out[c.name] = r.severity
    return out


def _global_baseline_failures(v: Verdict) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for r in v.rules:
        if r.type != "baseline" or r.threshold.get("per_class"):
            continue
        metric = r.threshold.get("metric")
        if isinstance(metric, str) and r.status is not Status.PASS and out.get(metric) is not Severity.BLOCK:
            out[metric] = r.severity
    return out


def _rule_metrics(v: Verdict, rule_type: str) -> list[str]:
    """Global metrics that rules of ``rule_type`` name (to compare them too)."""
    names = []
    for r in v.rules:
        metric = r.threshold.get("metric")
        if r.type == rule_type and not r.threshold.get("per_class") and isinstance(metric, str):
            names += [metric] if metric in GLOBAL_METRICS else []
    return names


def _bins(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    bins = _dict(metrics.get("calibration")).get("bins")
    if not isinstance(bins, list) or not bins or not all(isinstance(b, dict) for b in bins):
        return None
    return bins


def comparison(v: Verdict) -> Comparison | None:
    """The champion-vs-challenger comparison, when the verdict has a ``baseline`` section."""
    if not isinstance(v.baseline, dict):
        return None
    base = v.baseline
    model = _dict(base.get("model"))
    champion = _dict(base.get("metrics"))
    challenger = v.metrics or {}
    keys = list(dict.fromkeys([k for k, _ in COMPARED] + _rule_metrics(v, "baseline")))
    rows = _rows(champion, challenger, keys, _global_baseline_failures(v))
    metric = CLASS_METRIC
    class_failures = _baseline_class_failures(v, metric)
    before_pc, after_pc = _dict(champion.get("per_class")), _dict(challenger.get("per_class"))
    classes = []
    for name in list(dict.fromkeys([*after_pc, *before_pc])):
        b, a = _num(_dict(before_pc.get(name)).get(metric)), _num(_dict(after_pc.get(name)).get(metric))
        classes.append(ClassChange(name, b, a, _difference(b, a), class_failures.get(name)))
    compared = _dict(base.get("comparison"))
    diff = _dict(compared.get("accuracy_difference"))
    mcnemar = _dict(compared.get("mcnemar"))
    paired = _paired(v, mcnemar, champion) if mcnemar else None
    path, sha, size = model.get("path"), model.get("sha256"), _int(model.get("bytes"))
    return Comparison(
        path=path if isinstance(path, str) and path else None,
        sha256=sha if isinstance(sha, str) and sha else None,
        size=size,
        rows=rows,
        class_metric=metric,
        classes=classes,
        interval=interval_sentence(diff),
        interval_reading=interval_words(diff),
        paired=paired,
        mcnemar_reading=mcnemar_words(paired, mcnemar_alpha(v)) if paired is not None else None,
        champion_bins=calibration_bins(champion),
        champion_ece=_num(champion.get("ece")),
    )


# --- training sample ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSample:
    """The candidate on a sample of its training data (``before``) vs the held-out set
    (``after``); ``gap`` is how much better it does on the training sample."""

    name: str | None
    samples: int | None
    sha256: str | None
    rows: list[MetricRow]

    @staticmethod
    def gap(row: MetricRow) -> float | None:
        if row.before is None or row.after is None:
            return None
        return row.before - row.after if row.higher_is_better else row.after - row.before


def training_sample(v: Verdict) -> TrainingSample | None:
    if not isinstance(v.train_sample, dict):
        return None
    ts = v.train_sample
    keys = list(dict.fromkeys([k for k, _ in COMPARED if k != "ece"] + _rule_metrics(v, "train_test_gap")))
    failures: dict[str, Severity] = {}
    for r in v.rules:
        metric = r.threshold.get("metric")
        failing = r.type == "train_test_gap" and r.status is not Status.PASS
        if failing and isinstance(metric, str) and failures.get(metric) is not Severity.BLOCK:
            failures[metric] = r.severity
    rows = _rows(_dict(ts.get("metrics")), v.metrics or {}, keys, failures)
    name, sha = ts.get("name"), ts.get("sha256")
    return TrainingSample(
        name if isinstance(name, str) and name else None,
        _int(ts.get("samples")),
        sha if isinstance(sha, str) and sha else None,
        rows,
    )


# --- leakage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    sample: str
    train: str
    distance: int | None


@dataclass(frozen=True)
class Leakage:
    """The near-duplicates one ``leakage`` rule found (its ``details``)."""

    rule: RuleResult
    matches: int | None
    rate: float | None
    examples: list[Leak]
    fingerprint_sha256: str | None

    @property
    def unlisted(self) -> int:
        """Matches the verdict found but does not list."""
        return max(0, (self.matches or 0) - len(self.examples))


def leakage(rule: RuleResult) -> Leakage | None:
    """The near-duplicates of a rule result whose details list them; None for other rules."""
    raw = rule.details.get("examples") if rule.details else None
    if not isinstance(raw, list):
        return None
    examples = []
    for e in raw:
        if not isinstance(e, dict):
            continue
        sample = e.get("sample", e.get("held_out_id"))
        train = e.get("train", e.get("train_path"))
        examples.append(Leak(str(sample), str(train), _int(e.get("distance"))))
    sha = rule.details.get("fingerprint_sha256")
    return Leakage(
        rule,
        _int(rule.details.get("matches")),
        _num(rule.details.get("rate")),
        examples,
        sha if isinstance(sha, str) and sha else None,
    )


def leak_line(leak: Leak) -> str:
    distance = f" (Hamming distance {leak.distance})" if leak.distance is not None else ""
    return f"{leak.sample} ≈ {leak.train}{distance}"


def leakage_summary(found: Leakage, shown: int) -> str:
    """``12 held-out samples nearly duplicate training images (2.00% of the set); the 10 closest:``."""
    n = found.matches if found.matches is not None else len(found.examples)
    rate = f" ({found.rate:.2%} of the set)" if found.rate is not None else ""
    head = f"{n} held-out sample{'s' if n != 1 else ''} nearly duplicate{'' if n != 1 else 's'} training images{rate}"
    if shown == 0:
        return head
    if shown >= n:
        return f"{head}:"
    return f"{head}; the {shown} closest:" if shown > 1 else f"{head}; the closest:"


def leakage_more(found: Leakage, shown: int) -> str | None:
    """The line after a shortened list, or None when nothing was left out."""
    n = found.matches if found.matches is not None else len(found.examples)
    left = n - shown
    if left <= 0:
        return None
    in_json = len(found.examples) - shown
    if in_json >= left:
        return f"… and {left} more, listed in the verdict JSON"
    if in_json > 0:
        return f"… and {left} more (the verdict JSON lists {in_json} of them)"
    return f"… and {left} more"


# --- calibration -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    count: int
    accuracy: float | None
    confidence: float | None


def calibration_bins(metrics: dict[str, Any] | None) -> list[Bin] | None:
    """The reliability-diagram bins of a metrics object; None when absent, malformed or empty."""
    bins = _bins(metrics or {})
    if bins is None:
        return None
    out = []
    for b in bins:
        lower, upper, count = _num(b.get("lower")), _num(b.get("upper")), _int(b.get("count"))
        if lower is None or upper is None or count is None or upper <= lower or count < 0:
            return None
        out.append(Bin(lower, upper, count, _num(b.get("accuracy")), _num(b.get("confidence"))))
    if sum(b.count for b in out) == 0:
        return None
    return out
