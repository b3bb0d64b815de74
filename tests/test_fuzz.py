"""Fuzzing: property tests of the policy loader, the policy engine and the metrics.

* The loader: for any text or bytes (random, YAML-shaped from the real schema, mutated YAML),
  ``parse_policy`` returns a valid :class:`Policy` or raises :class:`PolicyError`, and a
  policy it returns is consistent and reads back to the same rules.
* The engine: random valid policies on random confusion matrices (empty rows and columns
  included) never error, never PASS past a blocking result, give each rule the status an
  independent reading of its threshold gives, and fail every rule whose value is undefined.
* The metrics: ranges, exact count ratios, undefined exactly at a zero denominator, one
  answer from predictions or from their confusion matrix, invariance under a permutation
  of the classes, strict JSON.

Example counts are modest so that the default run stays quick. ``GATE_FUZZ_EXAMPLES``
raises the count of the loader fuzz test; ``make fuzz`` runs it with 20000 and a fixed
seed. The example database is off, so a run depends only on its seed; a failure prints the
falsifying example and a ``@reproduce_failure`` line that replays it.

Inputs the fuzz found (all fixed) are kept as plain regression tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import re
import string
import unicodedata
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.stats import norm as scipy_norm

from gate.errors import PolicyError
from gate.metrics import GLOBAL_METRICS, PER_CLASS_METRICS, ClassificationMetrics, confusion_matrix
from gate.policy import RULE_TYPES, TOLERANCE, Policy, apply_policy, parse_policy
from gate.policy.rules import (
    ConfusionRule,
    ImbalanceRule,
    MajorityBaselineRule,
    MetricRule,
    MinSupportRule,
    PerClassRule,
    Rule,
)
from gate.policy.schema import _PolicyHeader
from gate.verdict import Decision, Severity, Status, decide

FUZZ_EXAMPLES = int(os.environ.get("GATE_FUZZ_EXAMPLES", "300"))

# No example database: a run depends only on its seed (`--hypothesis-seed`), never on what
# an earlier run left in .hypothesis/. print_blob prints a @reproduce_failure line on failure.
# no deadline: a wall-clock limit would make a test's outcome depend on how busy the machine is
FUZZ = settings(database=None, derandomize=False, print_blob=True, deadline=None)

NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
_ALNUM = string.ascii_letters + string.digits
# names and ids the schema accepts (built directly: much cheaper than st.from_regex)
_names = st.builds(operator.add, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.-", max_size=12))
_ids = st.builds(operator.add, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.:-", max_size=12))

# every key the schema knows, read from the models themselves so that a new field is fuzzed too
HEADER_KEYS = list(_PolicyHeader.model_fields)
RULE_KEYS = sorted({key for cls in RULE_TYPES.values() for key in cls.model_fields})
NEAR_MISSES = ["mni", "Min", "typ", "metrc", "rule", "Rules", "versoin", "id ", "", "<<"]
CLASS_NAMES = ["cat", "dog", "rabbit", "ok", "defect", "0", "yes", "null", "ünï", "a b"]
WORDS = [*RULE_TYPES, *GLOBAL_METRICS, *PER_CLASS_METRICS, "block", "warn", "recal", "acuracy", *CLASS_NAMES]


# -- inputs the fuzz found ---------------------------------------------------------------------------

HEAD = "version: 1\nname: x\nrules:\n"
HUGE = "0x" + "f" * 4000  # 4816 decimal digits: Python's 4300-digit limit stops only decimal literals

# each of these once escaped parse_policy as another exception (TypeError, ValueError, KeyError,
# AttributeError, OverflowError, RecursionError, UnicodeEncodeError)
HOSTILE = {
    "sequence-key": "{[a]: 1}\n",
    "mapping-key": "? {a: 1}\n: 2\n",
    "key-in-rule": HEAD + " - {[id]: a}\n",
    "set-on-scalar": "a: !!set x\n",
    "map-on-sequence": "a: !!map [1, 2]\n",
    "impossible-date": "version: 2001-02-30\n",
    "hour-25": "a: 2001-12-14 25:00:00\n",
    "int-tag": "version: !!int abc\n",
    "float-tag": "version: !!float abc\n",
    "bool-tag": "version: !!bool abc\n",
    "timestamp-tag": "version: !!timestamp abc\n",
    "escape-past-unicode": 'a: "\\U00110000"\n',
    "escape-past-c-int": 'a: "\\UFFFFFFFF"\n',
    "long-decimal": "version: " + "1" * 4301 + "\n",
    "hex-version": f"version: {HUGE}\nname: x\nrules: []\n",
    "base-60-version": "version: 1" + ":59" * 3000 + "\nname: x\nrules: []\n",
    "hex-metric-min": HEAD + f" - {{id: a, type: metric, metric: accuracy, min: {HUGE}}}\n",
    "hex-rule-id": HEAD + f" - {{id: {HUGE}, type: metric, metric: accuracy, min: 0.5}}\n",
    "deep-list": "[" * 1000 + "]" * 1000,
    "deep-map": "{a: " * 1000 + "1" + "}" * 1000,
    "lone-surrogate": "name: \ud800\n",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_yaml_is_a_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_huge_integer_rule_type_is_a_policy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-core also reports, as an exception ignored, that it cannot print such a tag; it is
    # set aside here because pytest's own report of it fails on the same repr
    monkeypatch.setattr("sys.unraisablehook", lambda _: None)
    with pytest.raises(PolicyError):
        parse_policy(HEAD + f" - {{id: a, type: {HUGE}}}\n")


@pytest.mark.parametrize(
    "text", ["a: !!int\n", "a: [!!int ]\n", "version: !!float ''\n", "a: !!int '-'\n", "a: !!int _\n"]
)
def test_empty_int_or_float_tag_is_a_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_min_support_beyond_float_range_is_refused_or_evaluated() -> None:
    # it once loaded, then raised OverflowError in float(self.min) on every evaluation
    try:
        policy = parse_policy(HEAD + " - {id: a, type: min_support, min: 0x" + "f" * 300 + "}\n")
    except PolicyError:
        return
    (result,) = apply_policy(policy, ClassificationMetrics.from_confusion([[5, 1], [1, 5]], ["a", "b"]))
    assert result.status is Status.INCONCLUSIVE, result.message


def test_nested_policy_is_refused_before_parsing() -> None:
    # lists 250 deep once took PyYAML's scanner 2.5 s per 32 KiB (it checks every open flow level
    # on every token): about 120 s for a policy of MAX_POLICY_BYTES; now such text is refused
    # before it is parsed (a check of what happened, not of how long it took)
    unit = "[" * 250 + "]" * 250 + ","
    with pytest.raises(PolicyError, match="nested more than 32 levels deep"):
        parse_policy("a: [" + unit * (32768 // len(unit)) + "]")
    # brackets in quoted strings and comments are not nesting
    text = "version: 1\nname: x  # " + "[" * 40 + "\ndescription: '" + "{" * 40 + "'\n"
    assert parse_policy(text + "rules: [{id: a, type: metric, metric: accuracy, min: 0.5}]\n").name == "x"


# -- the loader: strategies ------------------------------------------------------------------------

# scalars of every type YAML can give, biased towards the schema's own words and the edges
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 130),
    st.integers(),
    st.integers(-(10**400), 10**400),  # huge (one of more than 4300 digits could not be written out)
    st.floats(),  # NaN and +/-inf included
    st.floats(0, 1),
    st.text(max_size=12),
    st.sampled_from(WORDS),
    st.sampled_from(["1", "0.5", ".nan", ".inf", "1e400", "0x1F", "yes", "~", "2001-12-14", "1:20"]),
    st.dates(),
)
_keys = st.one_of(st.sampled_from(HEADER_KEYS + RULE_KEYS + NEAR_MISSES), st.text(max_size=8), st.integers(), st.none())
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=6,
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


_unit = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1.5, -0.1, math.nan, math.inf]))
# a plausible value for each schema key; the fuzz mixes these with values of any type
_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": _ids | st.sampled_from(["a", "a", "b"]),
    "type": st.sampled_from([*RULE_TYPES, "metrc", "Metric"]),
    "severity": st.sampled_from(["block", "warn", "Block", "fatal"]),
    "description": st.text(max_size=40),
    "metric": st.sampled_from([*GLOBAL_METRICS, *PER_CLASS_METRICS, "acuracy"]),
    "min": _unit | st.integers(-5, 100) | st.floats(),
    "max": _unit | st.floats(),
    "classes": st.dictionaries(st.sampled_from(CLASS_NAMES) | st.text(max_size=5), _unit | _scalars, max_size=4),
    "max_ratio": st.floats(0.5, 100) | st.sampled_from([1.0, math.inf, math.nan]),
    "min_recall": _unit,
    "margin": _unit,
    "max_rate": _unit,
    "actual": st.sampled_from(CLASS_NAMES),
    "predicted": st.sampled_from(CLASS_NAMES),
}


# strategies built once: hypothesis pays for each new strategy object on every draw
_tenth = st.integers(0, 9)  # 0 one time in ten
_rule_tags = st.sampled_from(list(RULE_TYPES))
_own_keys = {
    tag: st.lists(st.sampled_from(list(cls.model_fields)), unique=True, min_size=len(cls.model_fields) - 3)
    for tag, cls in RULE_TYPES.items()
}
_stray_keys = st.lists(st.sampled_from(RULE_KEYS + NEAR_MISSES), max_size=1)  # another type's key, or a typo


@st.composite
def _fuzzed_rule(draw: st.DrawFn) -> Any:
    if draw(_tenth) == 0 and draw(st.booleans()):
        return draw(_values)  # not a mapping at all
    tag = draw(_rule_tags)
    keys = draw(_own_keys[tag]) + draw(_stray_keys)
    rule: dict[Any, Any] = {"type": tag}
    for key in keys:
        plausible = _PLAUSIBLE.get(key)
        wild = plausible is None or draw(_tenth) == 0
        rule[key] = draw(_values if wild else plausible)
    if "type" not in keys and draw(st.booleans()):
        del rule["type"]
    return rule


_doc_names = _names | st.sampled_from(["default", "x"])
_doc_descriptions = st.text(max_size=30) | _scalars
_doc_rules = st.lists(_fuzzed_rule(), max_size=4)
_extra_keys = st.lists(_keys, max_size=1)
_nest_where = st.sampled_from(["rules", "description", "extra"])
_nest_depth = st.integers(1, 60)
_dropped_keys = st.lists(st.sampled_from(["version", "name", "rules"]), max_size=1)


@st.composite
def _fuzzed_document(draw: st.DrawFn) -> Any:
    """A Python object shaped like a policy: schema keys, rules of random types and fields,
    values of random types; sometimes a shared object (which the dumper writes as an
    anchor and an alias) or deep nesting."""
    doc: dict[Any, Any] = {"version": 1 if draw(_tenth) else draw(_values)}
    if draw(_tenth):
        doc["name"] = draw(_doc_names)
    if draw(st.booleans()):
        doc["description"] = draw(_doc_descriptions)
    rules = draw(_doc_rules)
    if rules and draw(_tenth) == 0:
        rules.append(rules[0])  # the same object twice: written as &id001 ... *id001
    doc["rules"] = rules if draw(_tenth) else draw(_values)
    for key in draw(_extra_keys):
        doc[key] = draw(_values)
    if draw(_tenth) == 0 and draw(st.booleans()):
        doc[draw(_nest_where)] = _nested(draw(_nest_depth))
    for key in draw(_dropped_keys):
        doc.pop(key, None)
    return doc


# libyaml's emitter when there is one: the same YAML, written faster
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_flow_styles = st.sampled_from([False, True, None])
_widths = st.integers(20, 200)


@st.composite
def _dumped(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> str:
    return yaml.dump(
        draw(documents),
        Dumper=_DUMPER,
        default_flow_style=draw(_flow_styles),
        allow_unicode=draw(st.booleans()),
        sort_keys=draw(st.booleans()),
        width=draw(_widths),
        explicit_start=draw(st.booleans()),
    )


# spliced into YAML text: YAML's syntax, its tags and directives, and the scalars it reads as
# something other than a string
TOKENS = [
    "&a ", "*a", "&b [", "*b", "!!str ", "!!binary ", "!!set ", "!!set {a, b}", "!!map ", "!!omap ", "!!null ",
    "!!int abc", "!!float abc", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!local ", '"\\U0011FFFF"',
    "2001-02-30", "2001-12-14 25:00:00",
    "!!python/object/apply:os.system ", "<<: ", "? ", ": ", "- ", "[", "]", "{", "}", ",", "#", "\n", "  ", "\t",
    "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", '"', "'", "|\n", ">-\n", "\\", "\x00", "\ufeff",
    "\u2028", "\x85", ".nan", "-.inf", ".inf", "1e400", "-1e-400", "0x" + "f" * 64, "0o777", "1_000", "190:20:30",
    "0b101", "~", "null", "yes", "off", "2001-12-14", "9" * 400, "9" * 4400, "rules:", "version: 1", "type: metric",
    "metric: accuracy", "min: 0.5", "severity: warn", "id: a", "- {id: b, type: min_support, min: 1}",
]  # fmt: skip


_mutation_count = st.integers(1, 4)
_mutation_kind = st.integers(0, 3)
_position = st.integers(0, 1 << 16)  # taken modulo the text's length
_tokens = st.sampled_from(TOKENS)
_cut = st.integers(1, 8)
_snippet = st.text(st.characters(exclude_categories=()), max_size=4)  # lone surrogates included


@st.composite
def _mutated(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    text = draw(texts)
    for _ in range(draw(_mutation_count)):
        at = draw(_position) % (len(text) + 1)
        how = draw(_mutation_kind)
        if how == 0:
            text = text[:at] + draw(_tokens) + text[at:]
        elif how == 1:
            text = text[:at] + text[at + draw(_cut) :]
        elif how == 2:
            text = text[:at] + draw(_snippet) + text[at:]
        else:
            lines = text.split("\n")
            i = draw(_position) % len(lines)
            lines.insert(i, lines[i])  # a repeated line: duplicate keys, or a rule twice
            text = "\n".join(lines)
    return text


def _deep(depth: int, shape: int) -> str:
    """Nesting ``depth`` levels deep, flow or block style, as the rules of a policy."""
    inner = ["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth, "\n" + "- " * depth + "x"][shape]
    return "version: 1\nname: x\nrules: " + inner + "\n"


_yaml_text = _dumped(_fuzzed_document())
_policy_sources = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    _yaml_text,
    _yaml_text.map(str.encode),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),  # not UTF-8
    _mutated(_yaml_text),
    _mutated(
        st.sampled_from(sorted(p.read_text() for p in (Path(__file__).parent.parent / "policies").glob("*.yaml")))
    ),
)


# -- the loader: properties ------------------------------------------------------------------------


def _ranges(rule: Rule) -> list[tuple[str, float, float, float]]:
    """(what, value, low, high) for each threshold of ``rule``, from the schema's documented ranges."""
    if isinstance(rule, MetricRule):
        info = GLOBAL_METRICS[rule.metric]
        assert rule.min is not None or rule.max is not None
        if rule.min is not None and rule.max is not None:
            assert rule.min <= rule.max
        return [(k, v, info.low, info.high) for k, v in (("min", rule.min), ("max", rule.max)) if v is not None]
    if isinstance(rule, PerClassRule):
        assert rule.metric in PER_CLASS_METRICS
        assert rule.min is not None or rule.classes
        floors = [("min", rule.min)] if rule.min is not None else []
        return [(k, v, 0.0, 1.0) for k, v in floors + [(f"classes.{c}", f) for c, f in rule.classes.items()]]
    if isinstance(rule, MinSupportRule):
        assert isinstance(rule.min, int)
        return [("min", rule.min, 1, math.inf)]
    if isinstance(rule, ImbalanceRule):
        return [("max_ratio", rule.max_ratio, 1.0, math.inf), ("min_recall", rule.min_recall, 0.0, 1.0)]
    if isinstance(rule, MajorityBaselineRule):
        return [("margin", rule.margin, 0.0, 1.0)]
    if isinstance(rule, ConfusionRule):
        assert rule.actual != rule.predicted
        return [("max_rate", rule.max_rate, 0.0, 1.0)]
    raise AssertionError(f"rule type {rule.type!r} has no range check here: add one")


def _as_document(policy: Policy) -> dict[str, Any]:
    def plain(rule: Rule) -> dict[str, Any]:
        return {k: v.value if isinstance(v, Severity) else v for k, v in rule.model_dump().items()}

    return {
        "version": 1,
        "name": policy.name,
        "description": policy.description,
        "rules": [plain(r) for r in policy.rules],
    }


def _check_valid(policy: Policy, source: str | bytes) -> None:
    raw = source.encode() if isinstance(source, str) else source
    assert policy.sha256 == hashlib.sha256(raw).hexdigest()
    assert policy.text == raw.decode()
    assert re.fullmatch(NAME_RE, policy.name) and len(policy.name) <= 128
    assert policy.rules, "a policy without rules"
    assert any(r.severity is Severity.BLOCK for r in policy.rules), "a policy that could never FAIL"
    assert len(policy.lines) == len(policy.rules)
    ids = [r.id for r in policy.rules]
    assert len(set(ids)) == len(ids), f"duplicate rule ids {ids}"
    for rule in policy.rules:
        assert type(rule) is RULE_TYPES[rule.type]
        assert re.fullmatch(ID_RE, rule.id) and len(rule.id) <= 128
        assert rule.problems() == []
        for what, value, low, high in _ranges(rule):
            # a float threshold is finite too (an infinite one could not be written to the audit
            # log); an int is compared as it is, since a huge one does not convert to float
            finite = isinstance(value, int) or math.isfinite(value)
            assert finite and low <= value <= high, f"rule {rule.id}: {what} {value} not in [{low}, {high}]"
    # round trip: the rules written back out (quoted as a policy author must) read as the same rules
    assert parse_policy(yaml.dump(_as_document(policy), Dumper=_Gate12Dumper)).rules == policy.rules


def _valid_or_policy_error(source: str | bytes) -> None:
    try:
        policy = parse_policy(source)
    except PolicyError as e:
        assert e.message.startswith("invalid policy <inline>")
        event("PolicyError")
        return
    event("valid")
    _check_valid(policy, source)


@settings(FUZZ, max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(source=_policy_sources)
def test_parse_policy_returns_a_valid_policy_or_raises_policy_error(source: str | bytes) -> None:
    _valid_or_policy_error(source)


# apart from the fuzz above, with few examples: near and past the recursion limit an input
# costs up to half a second, and the answer is the same at every depth beyond it
@settings(FUZZ, max_examples=10)
@given(depth=st.integers(1, 600), shape=st.integers(0, 2))
def test_parse_policy_on_deep_nesting(depth: int, shape: int) -> None:
    _valid_or_policy_error(_deep(depth, shape))


# -- the engine: valid policies on random confusion matrices --------------------------------------


@st.composite
def _fraction(draw: st.DrawFn, low: int = 0, high: int = 1) -> float:
    # a ratio of small counts, so that thresholds often sit exactly on an observed value
    den = draw(st.integers(1, 50))
    return draw(st.integers(low * den, high * den)) / den


_unit_threshold = st.one_of(st.floats(0, 1), _fraction(), st.sampled_from([0.0, 1.0]))


def _bound(metric: str) -> st.SearchStrategy[float]:
    info = GLOBAL_METRICS[metric]
    if math.isinf(info.high):
        return st.one_of(st.floats(info.low, 60), _fraction(int(info.low), 60))
    return st.one_of(st.floats(info.low, info.high), _fraction(int(info.low), int(info.high)))


@st.composite
def _metric_rule(draw: st.DrawFn, classes: list[str]) -> dict[str, Any]:
    metric = draw(st.sampled_from(list(GLOBAL_METRICS)))
    which = draw(st.sampled_from(["min", "max", "both"]))
    bounds = sorted([draw(_bound(metric)), draw(_bound(metric))])
    if which == "min":
        return {"metric": metric, "min": bounds[0]}
    if which == "max":
        return {"metric": metric, "max": bounds[1]}
    return {"metric": metric, "min": bounds[0], "max": bounds[1]}


@st.composite
def _per_class_rule(draw: st.DrawFn, classes: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {"metric": draw(st.sampled_from(PER_CLASS_METRICS))}
    floors = draw(st.dictionaries(st.sampled_from(classes), _unit_threshold, max_size=3))
    if floors:
        rule["classes"] = floors
    if not floors or draw(st.booleans()):
        rule["min"] = draw(_unit_threshold)
    return rule


@st.composite
def _confusion_rule(draw: st.DrawFn, classes: list[str]) -> dict[str, Any]:
    actual, predicted = draw(st.lists(st.sampled_from(classes), min_size=2, max_size=2, unique=True))
    return {"actual": actual, "predicted": predicted, "max_rate": draw(_unit_threshold)}


VALID_RULES: dict[str, Any] = {
    "metric": _metric_rule,
    "per_class": _per_class_rule,
    "min_support": lambda classes: st.fixed_dictionaries({"min": st.integers(1, 60)}),
    "imbalance": lambda classes: st.fixed_dictionaries(
        {"max_ratio": st.one_of(st.floats(1, 60), _fraction(1, 60)), "min_recall": _unit_threshold}
    ),
    "majority_baseline": lambda classes: st.fixed_dictionaries({"margin": _unit_threshold}),
    "confusion": _confusion_rule,
}

# class names: any printable text (YAML keys and values, quoted as needed by the dumper), in
# NFC as every dataset's class names are (gate.datasets normalises them when it loads a set)
_class_name = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=6).map(
    lambda name: unicodedata.normalize("NFC", name)
)


@st.composite
def _confusion(draw: st.DrawFn, k: int, max_count: int = 50) -> np.ndarray:
    cm = np.array(
        draw(st.lists(st.lists(st.integers(0, max_count), min_size=k, max_size=k), min_size=k, max_size=k)),
        dtype=np.int64,
    )
    # classes with no samples (empty rows) and classes never predicted (empty columns)
    cm[sorted(draw(st.sets(st.integers(0, k - 1), max_size=k))), :] = 0
    cm[:, sorted(draw(st.sets(st.integers(0, k - 1), max_size=k)))] = 0
    return cm


@st.composite
def _policy_case(draw: st.DrawFn) -> tuple[list[str], str, np.ndarray]:
    """Class names, the YAML of a valid policy over them, and a confusion matrix."""
    k = draw(st.integers(2, 12))
    classes = draw(st.lists(_class_name, min_size=k, max_size=k, unique=True))
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(_ids, min_size=n, max_size=n, unique=True))
    rules = []
    for rule_id in ids:
        tag = draw(st.sampled_from(list(VALID_RULES)))
        rule = {"id": rule_id, "type": tag, **draw(VALID_RULES[tag](classes))}
        if draw(st.booleans()):
            rule["severity"] = draw(st.sampled_from(["block", "warn"]))
        rules.append(rule)
    if all(r.get("severity") == "warn" for r in rules):
        rules[draw(st.integers(0, n - 1))]["severity"] = "block"  # a valid policy has a blocking rule
    doc = {
        "version": 1,
        "name": draw(_names),
        "rules": rules,
    }
    text = yaml.dump(
        doc, Dumper=_Gate12Dumper, default_flow_style=draw(st.sampled_from([False, None])), allow_unicode=True
    )
    return classes, text, draw(_confusion(k))


class _Gate12Dumper(yaml.SafeDumper):
    """PyYAML's dumper, quoting what gate's loader reads as a number although YAML 1.1
    does not (`1e-6`, `0E0`): a class named so must be quoted in a policy."""


_Gate12Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _value(cm: np.ndarray, i: int, metric: str) -> float | None:
    """Precision, recall or F1 of class i straight from the counts."""
    tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
    num, den = {"precision": (tp, predicted), "recall": (tp, support), "f1": (2 * tp, support + predicted)}[metric]
    return None if den == 0 else num / den


def _ge(a: float, b: float) -> bool:
    """a >= b, equal within the policy's documented tolerance counting as met."""
    return a >= b or abs(a - b) <= TOLERANCE * max(1.0, abs(b))


def _expected(rule: Rule, m: ClassificationMetrics, cm: np.ndarray) -> tuple[Status, bool]:
    """The status a rule must reach, read from the counts, and whether a value it needs is undefined."""
    support = cm.sum(axis=1)
    if isinstance(rule, MetricRule):
        v = m.value(rule.metric)
        if v is None:
            return Status.FAIL, True
        ok = (rule.min is None or _ge(v, rule.min)) and (rule.max is None or _ge(rule.max, v))
        return (Status.PASS if ok else Status.FAIL), False
    if isinstance(rule, PerClassRule):
        floors = {c: rule.classes.get(c, rule.min) for c in m.classes}
        values = [(_value(cm, i, rule.metric), floors[c]) for i, c in enumerate(m.classes) if floors[c] is not None]
        undefined = any(v is None for v, _ in values)
        ok = all(v is not None and _ge(v, f) for v, f in values)
        return (Status.PASS if ok else Status.FAIL), undefined
    if isinstance(rule, MinSupportRule):
        return (Status.PASS if support.min() >= rule.min else Status.INCONCLUSIVE), False
    if isinstance(rule, ImbalanceRule):
        if support.min() == 0:
            return Status.FAIL, True
        if _ge(rule.max_ratio, int(support.max()) / int(support.min())):
            return Status.PASS, False
        ok = all(_ge(int(cm[i, i]) / int(support[i]), rule.min_recall) for i in range(len(support)))
        return (Status.PASS if ok else Status.FAIL), False
    if isinstance(rule, MajorityBaselineRule):
        n = int(cm.sum())
        if n == 0:
            return Status.FAIL, True
        gap = int(np.trace(cm)) / n - int(support.max()) / n
        return (Status.PASS if _ge(gap, rule.margin) else Status.FAIL), False
    if isinstance(rule, ConfusionRule):
        a, p = m.classes.index(rule.actual), m.classes.index(rule.predicted)
        if support[a] == 0:
            return Status.FAIL, True
        return (Status.PASS if _ge(rule.max_rate, int(cm[a, p]) / int(support[a])) else Status.FAIL), False
    raise AssertionError(f"rule type {rule.type!r} has no expectation here: add one")


# rule types that judge evidence beyond one confusion matrix: fuzzed on their own below
# (leakage's near-duplicate search against brute force in tests/test_fingerprint.py,
# robustness's cells against recomputed metrics in tests/test_robustness_rule_checks.py;
# the deployment rules judge the model file and its runs, in tests/test_contract.py,
# tests/test_latency.py and tests/test_parity.py; the slice rules judge the predictions
# table's subgroups, in tests/test_slices*.py;
# the held-out rules against hand computation and cleanlab in tests/test_heldout_*.py)
CONTEXT_RULES = {
    "per_slice",
    "slice_gap",
    "baseline",
    "train_test_gap",
    "leakage",
    "robustness",
    "model_contract",
    "latency",
    "memory",
    "provider_parity",
    "label_quality",
    "heldout_duplicates",
    "selective",
}


def test_the_valid_policy_generator_covers_every_rule_type() -> None:
    assert set(VALID_RULES) | CONTEXT_RULES == set(RULE_TYPES)
    assert not set(VALID_RULES) & CONTEXT_RULES


def _wilson_low(k: int, n: int, confidence: float) -> float:
    """The Wilson score lower bound, written out independently of gate.stats."""
    z = float(scipy_norm.ppf(1 - (1 - confidence) / 2))
    p = k / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


@settings(FUZZ, max_examples=200)
@given(
    cm=_confusion(4),
    metric=st.sampled_from(["recall", "precision"]),
    floor=st.floats(1e-6, 1),  # a floor of 0 is vacuous: such a policy is refused
    confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_confident_floors_on_any_confusion_matrix(cm: np.ndarray, metric: str, floor: float, confidence: float) -> None:
    classes = ["a", "b", "c", "d"]
    policy = parse_policy(
        f"version: 1\nname: t\nrules:\n  - {{id: r, type: per_class, metric: {metric}, min: {floor!r},"
        f" confidence: {confidence}}}\n"
    )
    [result] = apply_policy(policy, ClassificationMetrics.from_confusion(cm, classes))
    for i, check in enumerate(result.classes):
        tp = int(cm[i, i])
        n = int(cm[i].sum()) if metric == "recall" else int(cm[:, i].sum())
        if n == 0:
            assert check.status is Status.FAIL and check.observed is None
            continue
        low = 0.0 if tp == 0 else _wilson_low(tp, n, confidence)
        if abs(low - floor) > 1e-9:
            assert (check.status is Status.PASS) == (low >= floor), check.message
        assert low <= tp / n + 1e-12


@settings(FUZZ, max_examples=200)
@given(
    data=st.data(),
    n=st.integers(1, 300),
    metric=st.sampled_from(["accuracy", "balanced_accuracy", "macro_f1", "mcc"]),
    max_drop=st.one_of(st.none(), st.floats(0, 0.5)),
    alpha=st.one_of(st.none(), st.sampled_from([0.01, 0.05, 0.2])),
)
def test_baseline_rule_on_any_paired_predictions(
    data: st.DataObject, n: int, metric: str, max_drop: float | None, alpha: float | None
) -> None:
    from scipy.stats import binomtest

    from gate.policy.context import BaselineRun, RuleContext

    if max_drop is None and alpha is None:
        max_drop = 0.0
    k = 3
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    old = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    new = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    classes = ["x", "y", "z"]
    champion = ClassificationMetrics.from_predictions(labels, old, classes)
    challenger = ClassificationMetrics.from_predictions(labels, new, classes)
    rule_yaml = f"{{id: r, type: baseline, metric: {metric}"
    if max_drop is not None:
        rule_yaml += f", max_drop: {max_drop!r}"
    if alpha is not None:
        rule_yaml += f", test: mcnemar, alpha: {alpha}"
    policy = parse_policy(f"version: 1\nname: t\nrules:\n  - {rule_yaml}}}\n")
    run = BaselineRun({"sha256": "0" * 64}, champion, labels, old == labels, new == labels)
    [result] = apply_policy(policy, challenger, RuleContext(challenger, baseline=run))

    before, after = champion.value(metric), challenger.value(metric)
    if before is None or after is None:
        assert result.status is Status.FAIL
        return
    drop = before - after
    if max_drop is not None and abs(drop - max_drop) <= TOLERANCE:
        return  # on the threshold: equal within the tolerance, so it holds
    broken = max_drop is not None and drop > max_drop
    if alpha is None:
        assert (result.status is Status.FAIL) == broken, result.message
        return
    worse = int(np.count_nonzero((old == labels) & (new != labels)))
    better = int(np.count_nonzero((old != labels) & (new == labels)))
    p = 1.0 if worse + better == 0 else binomtest(min(worse, better), worse + better, 0.5).pvalue
    if abs(p - alpha) < 1e-9:
        return
    significant = worse > better and p < alpha
    expected_fail = significant and (broken or max_drop is None)
    assert (result.status is Status.FAIL) == expected_fail, result.message


@settings(FUZZ, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(case=_policy_case())
def test_valid_policy_on_any_confusion_matrix(case: tuple[list[str], str, np.ndarray]) -> None:
    classes, text, cm = case
    try:
        policy = parse_policy(text)  # a valid policy is accepted
    except PolicyError as e:
        # unless every block rule is vacuous: no model could fail it
        assert "every block rule is vacuous" in e.problems[-1], e.message
        return
    _check_valid(policy, text)
    metrics = ClassificationMetrics.from_confusion(cm, classes)
    results = apply_policy(policy, metrics)
    assert [r.id for r in results] == [r.id for r in policy.rules]
    for rule, result in zip(policy.rules, results, strict=True):
        assert result.status is not Status.ERROR, f"rule {rule.id} raised: {result.message}"
        assert result.severity is rule.severity
        status, undefined = _expected(rule, metrics, cm)
        if undefined:
            assert result.status is Status.FAIL, f"rule {rule.id} needs an undefined value: {result.message}"
        assert result.status is status, f"rule {rule.id}: {result.status} != {status}: {result.message}"
        for check in result.classes:
            if check.observed is None:
                assert check.status is Status.FAIL
    json.dumps([r.to_dict() for r in results], allow_nan=False)  # what the audit log stores: strict JSON
    decision = decide(results)
    blocking = [r for r in results if r.severity is Severity.BLOCK and r.status in (Status.FAIL, Status.INCONCLUSIVE)]
    assert decision is (Decision.FAIL if blocking else Decision.PASS)


# -- the metrics ----------------------------------------------------------------------------------


@st.composite
def _metrics_case(draw: st.DrawFn) -> tuple[list[str], np.ndarray]:
    k = draw(st.integers(1, 12))
    return [f"c{i}" for i in range(k)], draw(_confusion(k))


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@settings(FUZZ, max_examples=300)
@given(case=_metrics_case())
def test_metrics_ranges_ratios_and_undefined_values(case: tuple[list[str], np.ndarray]) -> None:
    classes, cm = case
    m = ClassificationMetrics.from_confusion(cm, classes)
    k, n = len(classes), int(cm.sum())
    support, predicted, tp = [int(x) for x in cm.sum(axis=1)], [int(x) for x in cm.sum(axis=0)], np.diag(cm).tolist()
    assert m.samples == n
    for name, info in GLOBAL_METRICS.items():
        v = m.value(name)
        assert v is None or (math.isfinite(v) and info.low <= v <= info.high), (name, v)
    for i, c in enumerate(m.per_class):
        assert (c.name, c.support, c.predicted, c.tp) == (classes[i], support[i], predicted[i], tp[i])
        assert (c.fp, c.fn) == (predicted[i] - tp[i], support[i] - tp[i])
        for metric in PER_CLASS_METRICS:
            num, den = c.counts(metric)
            v = c.value(metric)
            assert v == _value(cm, i, metric)  # the exact ratio of the counts, or None
            assert (v is None) == (den == 0)
            assert v is None or (0.0 <= v <= 1.0 and v == num / den)

    recalls = [r for r in (c.recall for c in m.per_class) if r is not None]
    precisions = [p for p in (c.precision for c in m.per_class) if p is not None]
    f1s = [f for f in (c.f1 for c in m.per_class) if f is not None]
    assert (m.accuracy is None) == (n == 0) and (n == 0 or m.accuracy == sum(tp) / n)
    assert _close(m.balanced_accuracy, sum(recalls) / len(recalls) if recalls else None)
    assert _close(m.macro_recall, sum(recalls) / len(recalls) if recalls else None)
    assert _close(m.macro_precision, sum(precisions) / len(precisions) if precisions else None)
    assert _close(m.macro_f1, sum(f1s) / len(f1s) if f1s else None)
    weight = sum(support[i] for i, c in enumerate(m.per_class) if c.precision is not None)
    assert (m.weighted_precision is None) == (weight == 0)
    assert (m.weighted_recall is None) == (m.weighted_f1 is None) == (n == 0)
    assert (m.majority_baseline_accuracy is None) == (n == 0)
    assert (m.imbalance_ratio is None) == (min(support) == 0)
    if m.imbalance_ratio is not None:
        assert m.imbalance_ratio == max(support) / min(support)

    # MCC and kappa from exact integer arithmetic
    dot_pt = sum(p * t for p, t in zip(predicted, support, strict=True))
    cov_tp = sum(tp) * n - dot_pt
    cov_pp = n * n - sum(p * p for p in predicted)
    cov_tt = n * n - sum(t * t for t in support)
    assert (m.mcc is None) == (cov_pp * cov_tt == 0)
    if m.mcc is not None:
        assert math.isclose(m.mcc, cov_tp / math.sqrt(cov_pp) / math.sqrt(cov_tt), rel_tol=1e-9, abs_tol=1e-12)
    assert (m.cohen_kappa is None) == (n == 0 or dot_pt == n * n)
    if m.cohen_kappa is not None:
        p_o, p_e = Fraction(sum(tp), n), Fraction(dot_pt, n * n)
        assert math.isclose(m.cohen_kappa, float((p_o - p_e) / (1 - p_e)), rel_tol=1e-9, abs_tol=1e-12)
    assert k == len(m.per_class)

    # strict JSON, and it reads back unchanged
    text = json.dumps(m.to_dict(), allow_nan=False)
    assert json.loads(text) == m.to_dict()


@settings(FUZZ, max_examples=200)
@given(case=_metrics_case(), data=st.data())
def test_metrics_from_predictions_agree_with_the_confusion_matrix(
    case: tuple[list[str], np.ndarray], data: st.DataObject
) -> None:
    classes, cm = case
    k = len(classes)
    # the samples of cm, in an order of hypothesis' choosing
    t = np.repeat(np.repeat(np.arange(k), k), cm.ravel())
    p = np.repeat(np.tile(np.arange(k), k), cm.ravel())
    order = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).permutation(len(t))
    t, p = t[order], p[order]
    assert confusion_matrix(t, p, k).tolist() == cm.tolist()
    from_labels = ClassificationMetrics.from_predictions(t, p, classes)
    from_matrix = ClassificationMetrics.from_confusion(confusion_matrix(t, p, k), classes)
    assert from_labels.to_dict() == from_matrix.to_dict() == ClassificationMetrics.from_confusion(cm, classes).to_dict()
    # labels drawn directly, not derived from a matrix
    pairs = data.draw(st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=200))
    t2 = np.array([a for a, _ in pairs], dtype=np.int64)
    p2 = np.array([b for _, b in pairs], dtype=np.int64)
    direct = ClassificationMetrics.from_predictions(t2, p2, classes)
    assert direct.to_dict() == ClassificationMetrics.from_confusion(confusion_matrix(t2, p2, k), classes).to_dict()
    assert direct.samples == len(pairs)


@settings(FUZZ, max_examples=200)
@given(case=_metrics_case(), data=st.data())
def test_permuting_classes_permutes_per_class_results(case: tuple[list[str], np.ndarray], data: st.DataObject) -> None:
    classes, cm = case
    perm = data.draw(st.permutations(range(len(classes))))
    m = ClassificationMetrics.from_confusion(cm, classes)
    moved = ClassificationMetrics.from_confusion(cm[np.ix_(perm, perm)], [classes[i] for i in perm])
    assert moved.per_class == tuple(m.per_class[i] for i in perm)
    for name in GLOBAL_METRICS:
        # sums over classes in another order may differ in the last bit, never more
        assert _close(moved.value(name), m.value(name)), name
    assert moved.accuracy == m.accuracy
