"""Reading a policy's YAML safely, and remembering where each rule and key was written.

Refused here, each as one PolicyError: text that is not UTF-8, more than
``MAX_POLICY_BYTES``, flow nesting deeper than ``MAX_NESTING``, YAML syntax errors,
anchors and aliases (a policy never needs them, and they enable "billion laughs"
expansion), duplicate keys, and values PyYAML cannot build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gate.errors import PolicyError

MAX_POLICY_BYTES = 1 << 20

#: deeper than any policy needs; checked before parsing, because PyYAML's pure-Python
#: scanner slows down with every open level
MAX_NESTING = 32


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


# YAML 1.2 reads `1e-6` as a number; PyYAML (YAML 1.1) wants a dot and a signed exponent
# (`1.0e-6`) and would hand over the string '1e-6', which a strict number field refuses
_NoAliasLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class PolicySource:
    """A policy's YAML, read: the document, and where its parts were written."""

    raw: bytes
    text: str
    data: Any
    #: 1-based line of each rule item
    rule_lines: list[int | None] = field(default_factory=list)
    #: (rule index, key) -> 1-based line of that key
    key_lines: dict[tuple[int, str], int] = field(default_factory=dict)
    #: (rule index, key) -> a plain (unquoted) scalar value as written, e.g. 'no' for False
    written: dict[tuple[int, str], str] = field(default_factory=dict)
    #: top-level key -> its plain scalar value as written
    header_written: dict[str, str] = field(default_factory=dict)


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


def _plain(node: Any) -> str | None:
    """A scalar node's text when it was written plain (no quotes, no tag): what YAML
    resolved to a number or a boolean."""
    if isinstance(node, yaml.ScalarNode) and node.style is None:
        return str(node.value)
    return None


def _positions(text: str) -> dict[str, Any]:
    """Lines of the rules and their keys, and plain scalars as written, from the YAML nodes."""
    root = yaml.compose(text, Loader=_NoAliasLoader)
    out: dict[str, Any] = {"rule_lines": [], "key_lines": {}, "written": {}, "header_written": {}}
    if not isinstance(root, yaml.MappingNode):
        return out
    for k, v in root.value:
        if (plain := _plain(v)) is not None:
            out["header_written"][str(k.value)] = plain
        if k.value != "rules" or not isinstance(v, yaml.SequenceNode):
            continue
        for i, item in enumerate(v.value):
            out["rule_lines"].append(item.start_mark.line + 1)
            if not isinstance(item, yaml.MappingNode):
                continue
            for ik, iv in item.value:
                out["key_lines"][(i, str(ik.value))] = ik.start_mark.line + 1
                if (plain := _plain(iv)) is not None:
                    out["written"][(i, str(ik.value))] = plain
    return out


def _decoded(text: str | bytes, head: str) -> tuple[bytes, str]:
    try:
        raw = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError as e:  # e.g. a lone surrogate: no UTF-8 file can hold it
        raise PolicyError(f"{head}: not UTF-8 text ({e.reason} at position {e.start})") from e
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{head}: {len(raw)} bytes exceeds the {MAX_POLICY_BYTES}-byte limit")
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{head}: not UTF-8 text ({e})") from e


def read_source(text: str | bytes, head: str) -> PolicySource:
    """Read policy YAML; raise PolicyError (prefixed with ``head``) when it cannot be read."""
    raw, decoded = _decoded(text, head)
    if _nesting(decoded) > MAX_NESTING:
        raise PolicyError(f"{head}: the YAML is nested more than {MAX_NESTING} levels deep")
    try:
        data = yaml.load(decoded, Loader=_NoAliasLoader)
        positions = _positions(decoded)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise PolicyError(f"{head}: YAML error{where}: {problem}") from e
    except RecursionError as e:
        raise PolicyError(f"{head}: the YAML is nested too deeply") from e
    except Exception as e:
        # PyYAML's constructors raise all sorts for values they cannot build (an
        # impossible date, `!!int abc`, `!!int -`, a mapping used as a key, a 5,000-digit
        # integer): the policy is invalid, and it is said so, never let through as another
        # kind of failure
        raise PolicyError(f"{head}: YAML value that cannot be read: {type(e).__name__}: {e}") from e
    return PolicySource(raw, decoded, data, **positions)
