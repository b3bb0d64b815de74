"""Policy files: YAML text to a validated :class:`Policy`, or one PolicyError listing
every problem found, each with its rule id and YAML line.

Checks, in order, all collected before raising:

1. Reading (:mod:`gate.policy.yaml_source`): UTF-8, size, nesting, YAML syntax,
   anchors/aliases, duplicate keys.
2. Schema: unknown keys, unknown rule types, missing fields, and strict types: a number
   is a YAML int or float (never a boolean or a quoted string), a count an int, a flag a
   boolean, ``version`` the integer 1 written in decimal.
3. Meaning: duplicate rule ids, unknown metrics, min > max, thresholds outside a
   metric's range, an empty rule list, no blocking rule, and blocking rules that are all
   vacuous (no model could fail them): such a policy could never FAIL.
4. Against a dataset (:meth:`Policy.check_classes`): every class a rule names exists.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from gate.errors import PolicyError
from gate.policy.base import nfc
from gate.policy.rules import RULE_TYPES, Rule, suggest
from gate.policy.yaml_source import MAX_POLICY_BYTES, PolicySource, read_source
from gate.verdict import Severity

__all__ = ["MAX_POLICY_BYTES", "Policy", "VacuousRule", "load_policy", "parse_policy", "vacuous_rules"]


@functools.cache
def _any_rule_adapter() -> TypeAdapter[Rule]:
    """The union of every registered rule class, told apart by the YAML `type` field.
    Built on first use, and only for a rule whose type is missing or unknown: rule
    classes build their validators lazily (``defer_build``), so a policy builds only
    the validators of the rule types it uses (building them all is a measurable part
    of a small model's evaluation)."""
    union = functools.reduce(operator.or_, RULE_TYPES.values())
    return TypeAdapter(Annotated[union, Field(discriminator="type")])  # type: ignore[arg-type]


def _validate_rule(item: Any, rule_model: type[Rule] | None) -> tuple[Rule | None, list[Any]]:
    """One rule, validated by its own class where its `type` is known (what the union
    does once it has read the tag), else by the union; (the rule, []) or (None, the
    errors, located as the union locates them: the tag first)."""
    try:
        if rule_model is None:
            return _any_rule_adapter().validate_python(item), []
        return rule_model.model_validate(item), []
    except ValidationError as e:
        if rule_model is None:
            return None, e.errors()
        return None, [{**err, "loc": (item["type"], *err["loc"])} for err in e.errors()]


def _integer_version(value: Any) -> Any:
    # `version: true` and `version: 1.0` equal 1 in Python: refuse them before the literal
    if isinstance(value, bool | float):
        kind = "a boolean" if isinstance(value, bool) else "a number with a fraction part"
        raise PydanticCustomError("version_type", "Input should be the integer 1, not {kind}", {"kind": kind})
    return value


class _PolicyHeader(BaseModel):
    """The document's top level; each rule is validated on its own so that one bad rule
    does not hide the problems of the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[Literal[1], BeforeValidator(_integer_version)]
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", strict=True)
    description: str | None = Field(default=None, strict=True)
    rules: list[Any]


@dataclass(frozen=True)
class VacuousRule:
    """A rule no model can fail, and why."""

    id: str
    line: int | None
    severity: Severity
    reason: str

    def __str__(self) -> str:
        return f"{_where(self.id, self.line)}: {self.reason}"


@dataclass(frozen=True)
class Policy:
    """A validated policy and where it came from."""

    name: str
    rules: tuple[Rule, ...]
    sha256: str
    source: str  # file path or "<inline>"
    description: str | None = None
    lines: tuple[int | None, ...] = ()  # YAML line of each rule
    text: str = ""  # the YAML as given

    def check_classes(self, classes: list[str] | tuple[str, ...]) -> None:
        """Raise PolicyError when any rule names a class the dataset does not have."""
        known = list(classes)
        problems = []
        for i, rule in enumerate(self.rules):
            for name in rule.class_names():
                if name not in known:
                    problems.append(
                        f"{_where(rule.id, self.lines[i] if i < len(self.lines) else None)}:"
                        f" unknown class '{name}'{_closest(name, known)}; the dataset's classes are"
                        f" {', '.join(known)}"
                    )
        if problems:
            raise PolicyError(f"policy '{self.name}' ({self.source}) does not fit the dataset:", problems)

    @property
    def needs(self) -> set[str]:
        """The extra evidence its rules need (see gate.policy.context.NEEDS)."""
        return {rule.needs for rule in self.rules if rule.needs is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "source": self.source}


def _closest(name: str, known: list[str]) -> str:
    """' (did you mean ...?)', or, when a dataset class is the same name in another
    Unicode normalisation, a sentence saying so (the two look alike when printed)."""
    twins = [k for k in known if nfc(k) == name]
    if twins:
        return (
            f" (the dataset's class {twins[0]!r} is the same name in another Unicode normalisation:"
            f" policy class names are read as NFC, the dataset's is not)"
        )
    return suggest(name, known)


def _where(rule_id: str | None, line: int | None) -> str:
    who = f"rule '{rule_id}'" if rule_id else "rule"
    return f"{who} (line {line})" if line else who


def vacuous_rules(policy: Policy) -> list[VacuousRule]:
    """Every rule of ``policy`` that no model can fail (see docs/conventions.md), in order."""
    return _vacuous(policy.rules, policy.lines)


def _vacuous(
    rules: tuple[Rule, ...] | list[Rule], lines: tuple[int | None, ...] | list[int | None]
) -> list[VacuousRule]:
    found = []
    for i, rule in enumerate(rules):
        reason = rule.vacuous()
        if reason is not None:
            found.append(VacuousRule(rule.id, lines[i] if i < len(lines) else None, rule.severity, reason))
    return found


# -- messages ----------------------------------------------------------------------------

_TYPE_ERRORS = {"number_type", "count_type", "flag_type", "count_or_rate_type", "version_type"}


def _describe(err: Any, rule_model: type[Rule] | None, written: str | None = None) -> str:
    # inside a rule, pydantic's location starts with the rule type's tag: drop it
    loc = [str(x) for x in err["loc"]][1 if rule_model is not None else 0 :]
    kind = err["type"]
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        allowed = list(rule_model.model_fields) if rule_model else list(_PolicyHeader.model_fields)
        return f"unknown key '{field}'{suggest(field, allowed)}; allowed: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        tag = err["ctx"]["tag"]
        return f"unknown rule type '{tag}'{suggest(tag, RULE_TYPES)}; known types: {', '.join(RULE_TYPES)}"
    if kind == "union_tag_not_found":
        return f"missing `type`; known types: {', '.join(RULE_TYPES)}"
    if kind == "missing":
        return f"missing required key '{field}'"
    got = _shown(err.get("input"))
    if kind in _TYPE_ERRORS and written not in (None, got) and not isinstance(err.get("input"), str):
        got = f"{written!r}, which YAML reads as {got}"
    return f"{'.'.join(loc) or 'value'}: {err['msg']} (got {got})"


def _shown(value: Any) -> str:
    """A value for a message: its repr, cut to 80 characters, whatever it is."""
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        return "a number too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


# -- validation --------------------------------------------------------------------------


@dataclass
class _Reading:
    """The rules read so far, and every problem found."""

    source: PolicySource
    rules: list[Rule]
    problems: list[str]

    @property
    def raw_rules(self) -> list[Any]:
        rules = self.source.data.get("rules")
        return rules if isinstance(rules, list) else []

    def line(self, i: int) -> int | None:
        return self.source.rule_lines[i] if i < len(self.source.rule_lines) else None

    def rule_id(self, i: int) -> str:
        item = self.raw_rules[i]
        rid = item.get("id") if isinstance(item, dict) else None
        return _shown(rid).strip("'") if rid is not None else f"#{i + 1}"

    def rule_model(self, i: int) -> type[Rule] | None:
        item = self.raw_rules[i]
        kind = item.get("type") if isinstance(item, dict) else None
        return RULE_TYPES.get(kind) if isinstance(kind, str) else None


def _read_header(reading: _Reading) -> _PolicyHeader | None:
    data = reading.source.data
    version = reading.source.header_written.get("version")
    if (
        type(data.get("version")) is int
        and data["version"] == 1
        and version is not None
        and not re.fullmatch(r"[0-9]+", version)
    ):
        reading.problems.append(f"version: Input should be the integer 1 written in decimal (got {version!r})")
    try:
        return _PolicyHeader.model_validate(data)
    except ValidationError as e:
        reading.problems.extend(
            _describe(err, None, reading.source.header_written.get("version")) for err in e.errors()
        )
        return None


def _read_rules(reading: _Reading) -> None:
    for i, item in enumerate(reading.raw_rules):
        rule, errors = _validate_rule(item, reading.rule_model(i))
        if rule is None:
            for err in errors:
                field = str(err["loc"][1]) if len(err["loc"]) >= 2 else None
                where = _where(reading.rule_id(i), (reading.source.key_lines.get((i, field or ""))) or reading.line(i))
                written = reading.source.written.get((i, field or "")) if len(err["loc"]) == 2 else None
                reading.problems.append(f"{where}: {_describe(err, reading.rule_model(i), written)}")
            continue
        reading.problems.extend(f"{_where(rule.id, reading.line(i))}: {p}" for p in rule.problems())
        reading.rules.append(rule)


def _check_ids(reading: _Reading) -> None:
    ids: dict[str, int] = {}
    for i, item in enumerate(reading.raw_rules):
        rid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(rid, str):
            continue
        if rid in ids:
            reading.problems.append(f"{_where(rid, reading.line(i))}: duplicate rule id (also rule #{ids[rid] + 1})")
        else:
            ids[rid] = i


def _check_can_fail(reading: _Reading) -> None:
    """A policy must be able to FAIL a model: some block rule that is not vacuous."""
    rules = reading.rules
    if not reading.raw_rules or len(rules) != len(reading.raw_rules):
        return  # empty, or some rules did not even read: said already
    blocking = [r for r in rules if r.severity is Severity.BLOCK]
    if not blocking:
        reading.problems.append("every rule has severity warn: the policy could never FAIL a model")
        return
    lines = [reading.line(i) for i in range(len(rules))]
    vacuous = [v for v in _vacuous(rules, lines) if v.severity is Severity.BLOCK]
    if len(vacuous) == len(blocking):
        reading.problems.extend(f"{v}: no model can fail this rule" for v in vacuous)
        names = ", ".join(v.id for v in vacuous)
        reading.problems.append(
            f"every block rule is vacuous ({names}): the policy could never FAIL a model;"
            " give at least one block rule a threshold a bad model can break"
        )


def parse_policy(text: str | bytes, *, source: str = "<inline>") -> Policy:
    """Validate policy YAML text; raise one PolicyError listing every problem."""
    head = f"invalid policy {source}"
    read = read_source(text, head)
    if not isinstance(read.data, dict):
        raise PolicyError(f"{head}: expected a mapping with version, name and rules; got {type(read.data).__name__}")
    reading = _Reading(read, [], [])
    header = _read_header(reading)
    _read_rules(reading)
    if isinstance(read.data.get("rules"), list) and not read.data["rules"]:
        reading.problems.append("rules: the rule list is empty; a policy needs at least one rule")
    _check_ids(reading)
    _check_can_fail(reading)
    if reading.problems or header is None:
        raise PolicyError(f"{head}:", reading.problems)
    return Policy(
        name=header.name,
        rules=tuple(reading.rules),
        sha256=hashlib.sha256(read.raw).hexdigest(),
        source=source,
        description=header.description,
        lines=tuple(read.rule_lines),
        text=read.text,
    )


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError(f"invalid policy {p}: {size} bytes exceeds the {MAX_POLICY_BYTES}-byte limit")
        raw = p.read_bytes()
    except FileNotFoundError as e:
        raise PolicyError(f"policy file not found: {p}") from e
    except IsADirectoryError as e:
        raise PolicyError(f"policy path is a directory, not a file: {p}") from e
    except OSError as e:
        raise PolicyError(f"cannot read policy file {p}: {e.strerror}") from e
    return parse_policy(raw, source=str(p))
