"""What every rule type shares: the :class:`Rule` base class, the registry of rule types
keyed by their YAML ``type``, and the strict field types their YAML fields use.

Fields are strict, as in the dataset spec: a number must be a YAML int or float (never a
boolean, never a quoted string), a count a YAML int, a flag a YAML boolean. Lax
coercion would read ``min: no`` as a floor of 0 and ``min: '0.9'`` as 0.9 without a word.
Class names a rule mentions are normalised to Unicode NFC (see :func:`nfc`).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from gate.metrics import ClassificationMetrics
from gate.policy.context import RuleContext
from gate.verdict import ClassCheck, RuleResult, Severity, Status

RULE_TYPES: dict[str, type[Rule]] = {}

RuleT = TypeVar("RuleT", bound="Rule")


def register(cls: type[RuleT]) -> type[RuleT]:
    """Add a rule class to the registry under its ``type`` literal."""
    tag = cls.model_fields["type"].default
    if not isinstance(tag, str) or tag in RULE_TYPES:
        raise TypeError(f"rule class {cls.__name__} needs a unique string default for `type`")
    RULE_TYPES[tag] = cls
    return cls


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def nfc(name: str) -> str:
    """A class name in Unicode NFC: 'é' typed as one code point or as 'e' and a combining
    accent is one name, as it looks."""
    return unicodedata.normalize("NFC", name)


def in_range(label: str, value: float | None, low: float, high: float) -> list[str]:
    """A problem when ``value`` lies outside [low, high]."""
    if value is None or low <= value <= high:
        return []
    return [f"{label} {value:g} is outside the metric's range [{low:g}, {high:g}]"]


# -- strict field types ----------------------------------------------------------------


def _kind(value: Any) -> str:
    """What a YAML value is, for "Input should be X, not Y"."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, float):
        return "a number with a fraction part"
    if isinstance(value, int):
        return "an integer"
    return f"a {type(value).__name__}"


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                raise PydanticCustomError(
                    "number_type", "Input should be a valid number, unable to parse string as a number"
                ) from None
            raise PydanticCustomError(
                "number_type",
                "Input should be a valid number, not a string: a quoted number is text, write it without quotes",
            )
        raise PydanticCustomError("number_type", "Input should be a valid number, not {kind}", {"kind": _kind(value)})
    return value


def _count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("count_type", "Input should be a valid integer, not {kind}", {"kind": _kind(value)})
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise PydanticCustomError(
            "flag_type", "Input should be a valid boolean (true or false), not {kind}", {"kind": _kind(value)}
        )
    return value


def _count_or_rate(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "count_or_rate_type",
            "Input should be a count (an integer) or a rate (a number in [0, 1)), not {kind}",
            {"kind": _kind(value)},
        )
    return value


#: A YAML int or float (read as a float); never a boolean or a string.
Number = Annotated[float, BeforeValidator(_number)]
#: A YAML int; never a boolean, a float or a string.
Count = Annotated[int, BeforeValidator(_count)]
#: A YAML boolean.
Flag = Annotated[bool, BeforeValidator(_flag)]
#: A YAML int (a count) or float (a rate).
CountOrRate = Annotated[int | float, BeforeValidator(_count_or_rate)]
#: A string, never bytes or a number.
Text = Annotated[str, Field(strict=True)]
#: A class name, in NFC.
ClassName = Annotated[str, Field(strict=True), AfterValidator(nfc)]


def class_map(value: Any) -> Any:
    """Refuse two keys that are one class name in two Unicode normalisations: checked on
    the raw mapping, before its keys are normalised into one."""
    if not isinstance(value, dict):
        return value  # the dict validation after this says what is wrong
    seen: dict[str, str] = {}
    for key in value:
        if not isinstance(key, str):
            continue
        if nfc(key) in seen:
            raise PydanticCustomError(
                "class_name_twice",
                "class names {a} and {b} differ only in Unicode normalisation (NFC vs NFD): they are one class",
                {"a": repr(seen[nfc(key)]), "b": repr(key)},
            )
        seen[nfc(key)] = key
    return value


#: A mapping from class names (NFC) to numbers.
ClassNumbers = Annotated[dict[ClassName, Number], BeforeValidator(class_map)]


class Rule(BaseModel):
    """Fields and duties common to every rule type."""

    # thresholds are finite numbers: an infinite one cannot be written to the audit log
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False, defer_build=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", strict=True)
    type: str
    severity: Severity = Severity.BLOCK
    description: Text | None = None

    #: one-line summary of what this rule catches, for `gate policy` docs and reports
    catches: ClassVar[str] = ""
    #: extra evidence the rule needs (a key of gate.policy.context.NEEDS), or None
    needs: ClassVar[str | None] = None

    def problems(self) -> list[str]:
        return []

    def class_names(self) -> list[str]:
        return []

    def vacuous(self) -> str | None:
        """Why no model can fail this rule (its thresholds sit where no value can break
        them), or None when one can; see docs/conventions.md."""
        return None

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        raise NotImplementedError

    def check(self, context: RuleContext) -> RuleResult:
        """The rule's result in ``context``; rules that need only the metrics keep the default."""
        return self.evaluate(context.metrics)

    def result(
        self,
        status: Status,
        message: str,
        *,
        observed: float | None = None,
        threshold: dict[str, Any] | None = None,
        classes: Iterable[ClassCheck] = (),
        details: dict[str, Any] | None = None,
    ) -> RuleResult:
        return RuleResult(
            id=self.id,
            type=self.type,
            status=status,
            severity=self.severity,
            message=message,
            observed=observed,
            threshold=threshold or {},
            classes=tuple(classes),
            details=details or {},
        )
