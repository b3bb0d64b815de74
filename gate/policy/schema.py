"""Policy files: YAML text to a validated :class:`Policy`, or one PolicyError listing
every problem found, each with its rule id and YAML line.

Checks, in order, all collected before raising:

1. YAML syntax; anchors/aliases (a policy never needs them, and they enable
   "billion laughs" expansion); duplicate keys; size (``MAX_POLICY_BYTES``).
2. Schema: unknown keys, unknown rule types, wrong types, missing fields.
3. Meaning: duplicate rule ids, unknown metrics, min > max, thresholds outside a
   metric's range, an empty rule list, no blocking rule (such a policy could never FAIL).
4. Against a dataset (:meth:`Policy.check_classes`): every class a rule names exists.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gate.errors import PolicyError
from gate.policy.rules import RULE_TYPES, Rule, suggest
from gate.verdict import Severity

MAX_POLICY_BYTES = 1 << 20

# the union of every registered rule class, told apart by the YAML `type` field
AnyRule = Annotated[functools.reduce(operator.or_, RULE_TYPES.values()), Field(discriminator="type")]  # type: ignore[valid-type]
_RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(AnyRule)  # type: ignore[arg-type]


class _PolicyHeader(BaseModel):
    """The document's top level; each rule is validated on its own so that one bad rule
    does not hide the problems of the others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    rules: list[Any]


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
                        f" unknown class '{name}'{suggest(name, known)}; the dataset's classes are"
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


def _where(rule_id: str | None, line: int | None) -> str:
    who = f"rule '{rule_id}'" if rule_id else "rule"
    return f"{who} (line {line})" if line else who


class _NoAliasLoader(yaml.SafeLoader):
    """Safe loader that rejects anchors, aliases and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "YAML aliases are not allowed in a policy", event.start_mark)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(None, None, "YAML anchors are not allowed in a policy", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    None,
                    None,
                    f"duplicate key '{key}' (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _rule_lines(text: str) -> tuple[list[int | None], dict[tuple[int, str], int]]:
    """Line of each rule item and of each key within it (1-based), from the YAML nodes."""
    root = yaml.compose(text, Loader=_NoAliasLoader)
    starts: list[int | None] = []
    keys: dict[tuple[int, str], int] = {}
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if k.value == "rules" and isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    starts.append(item.start_mark.line + 1)
                    if isinstance(item, yaml.MappingNode):
                        for ik, _ in item.value:
                            keys[(i, str(ik.value))] = ik.start_mark.line + 1
    return starts, keys


def _describe(err: Any, rule_model: type[Rule] | None) -> str:
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
    return f"{'.'.join(loc) or 'value'}: {err['msg']} (got {_shown(err.get('input'))})"


def _shown(value: Any) -> str:
    """A value for a message: its repr, cut to 80 characters, whatever it is."""
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        return "a number too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


#: deeper than any policy needs; checked before parsing, because PyYAML's pure-Python
#: scanner slows down with every open level
MAX_NESTING = 32


def _nesting(text: str) -> int:
    """The deepest flow ([ ]/{ }) nesting of YAML text, ignoring quoted strings and comments."""
    depth = deepest = 0
    quote = ""
    comment = False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_policy(text: str | bytes, *, source: str = "<inline>") -> Policy:
    """Validate policy YAML text; raise one PolicyError listing every problem."""
    head = f"invalid policy {source}"
    try:
        raw = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError as e:  # e.g. a lone surrogate: no UTF-8 file can hold it
        raise PolicyError(f"{head}: not UTF-8 text ({e.reason} at position {e.start})") from e
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{head}: {len(raw)} bytes exceeds the {MAX_POLICY_BYTES}-byte limit")
    try:
        decoded = raw.decode("utf-8")
        if _nesting(decoded) > MAX_NESTING:
            raise PolicyError(f"{head}: the YAML is nested more than {MAX_NESTING} levels deep")
        data = yaml.load(decoded, Loader=_NoAliasLoader)
        starts, keys = _rule_lines(decoded)
    except UnicodeDecodeError as e:
        raise PolicyError(f"{head}: not UTF-8 text ({e})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise PolicyError(f"{head}: YAML error{where}: {problem}") from e
    except RecursionError as e:
        raise PolicyError(f"{head}: the YAML is nested too deeply") from e
    except PolicyError:
        raise
    except Exception as e:
        # PyYAML's constructors raise all sorts for values they cannot build (an
        # impossible date, `!!int abc`, `!!int -`, a mapping used as a key, a 5,000-digit
        # integer): the policy is invalid, and it is said so, never let through as another
        # kind of failure
        raise PolicyError(f"{head}: YAML value that cannot be read: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise PolicyError(f"{head}: expected a mapping with version, name and rules; got {type(data).__name__}")

    raw_rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    assert isinstance(raw_rules, list)

    def rule_id(i: int) -> str | None:
        item = raw_rules[i] if i < len(raw_rules) else None
        rid = item.get("id") if isinstance(item, dict) else None
        return _shown(rid).strip("'") if rid is not None else f"#{i + 1}"

    def rule_model(i: int) -> type[Rule] | None:
        item = raw_rules[i] if i < len(raw_rules) else None
        kind = item.get("type") if isinstance(item, dict) else None
        return RULE_TYPES.get(kind) if isinstance(kind, str) else None

    problems: list[str] = []
    header: _PolicyHeader | None = None
    try:
        header = _PolicyHeader.model_validate(data)
    except ValidationError as e:
        problems += [_describe(err, None) for err in e.errors()]

    rules: list[Rule] = []
    for i, item in enumerate(raw_rules):
        line = starts[i] if i < len(starts) else None
        try:
            rule = _RULE_ADAPTER.validate_python(item)
        except ValidationError as e:
            for err in e.errors():
                field = str(err["loc"][1]) if len(err["loc"]) >= 2 else None
                where = _where(rule_id(i), (keys.get((i, field)) if field else None) or line)
                problems.append(f"{where}: {_describe(err, rule_model(i))}")
            continue
        problems += [f"{_where(rule.id, line)}: {p}" for p in rule.problems()]
        rules.append(rule)

    if isinstance(data.get("rules"), list) and not data["rules"]:
        problems.append("rules: the rule list is empty; a policy needs at least one rule")

    ids: dict[str, int] = {}
    for i, item in enumerate(raw_rules):
        rid = item.get("id") if isinstance(item, dict) else None
        if isinstance(rid, str):
            if rid in ids:
                problems.append(
                    f"{_where(rid, starts[i] if i < len(starts) else None)}: duplicate rule id"
                    f" (also rule #{ids[rid] + 1})"
                )
            else:
                ids[rid] = i

    if raw_rules and len(rules) == len(raw_rules) and not any(r.severity is Severity.BLOCK for r in rules):
        problems.append("every rule has severity warn: the policy could never FAIL a model")

    if problems or header is None:
        raise PolicyError(f"{head}:", problems)
    return Policy(
        name=header.name,
        rules=tuple(rules),
        sha256=hashlib.sha256(raw).hexdigest(),
        source=source,
        description=header.description,
        lines=tuple(starts),
        text=decoded,
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
