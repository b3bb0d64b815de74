"""Waivers: a recorded, scoped and expiring permission to ship past one failing rule.

An administrator grants a waiver for one model (SHA-256), one dataset and one rule id,
with a reason and an expiry (``gate waive``). While it is valid, an evaluation of that
model on that dataset reports the rule with status ``waived``, its real outcome kept
beside it (:attr:`gate.verdict.RuleResult.outcome`), and the verdict is PASS only when
every other block rule passes. A waiver is valid from its grant until its expiry, unless
it was revoked earlier. Only a ``fail`` or ``inconclusive`` outcome is waived, never an
``error`` (nothing was judged) and never a rule that passed.

This module is pure: the audit log keeps the waivers (:mod:`gate.store.lifecycle`), the
server applies them (:func:`apply_waivers`) with its clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from gate.errors import RequestError
from gate.verdict import WAIVABLE, Decision, RuleResult, Severity, Status, Verdict, decide

#: The longest a waiver may run: a waiver is for a hotfix, not a policy change.
MAX_WAIVER_DAYS = 180
MAX_REASON_CHARS = 2000
MAX_NAME_CHARS = 200
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def timestamp(when: dt.datetime) -> str:
    """The audit log's form of a time: ISO 8601, UTC, seconds."""
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat()


def parse_time(text: str) -> dt.datetime:
    """A stored timestamp (always with its offset) as an aware datetime."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return when


@dataclass(frozen=True)
class Waiver:
    """One waiver as the audit log holds it."""

    id: str
    model_sha256: str
    dataset: str
    rule_id: str
    reason: str
    expires_at: str
    granted_by: str
    granted_at: str
    revoked_at: str | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def state(self, at: dt.datetime) -> str:
        """``active``, ``expired``, ``revoked`` or ``pending`` (granted after ``at``)."""
        if self.revoked_at is not None and parse_time(self.revoked_at) <= at:
            return "revoked"
        if at < parse_time(self.granted_at):
            return "pending"
        return "active" if at < parse_time(self.expires_at) else "expired"

    def valid_at(self, at: dt.datetime) -> bool:
        return self.state(at) == "active"

    def covers(self, model_sha256: str | None, dataset: str | None, rule_id: str) -> bool:
        return (self.model_sha256, self.dataset, self.rule_id) == ((model_sha256 or "").lower(), dataset, rule_id)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def stamp(self) -> dict[str, Any]:
        """What a waived rule result and the verdict's ``waivers`` section say of it."""
        return {
            "id": self.id,
            "rule": self.rule_id,
            "reason": self.reason,
            "expires_at": self.expires_at,
            "granted_by": self.granted_by,
            "granted_at": self.granted_at,
        }


# -- granting ---------------------------------------------------------------------------


def parse_expiry(text: str, *, now: dt.datetime) -> dt.datetime:
    """``--expires``: a date (the waiver holds through that day, UTC: it expires at the
    next midnight) or an ISO 8601 time with its offset. It must lie after ``now`` and at
    most :data:`MAX_WAIVER_DAYS` days after it."""
    value = text.strip()
    whole_day = re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(
            f"expires={text!r} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SS+00:00)"
        ) from None
    if whole_day:
        when = when.replace(tzinfo=dt.UTC)
    if when.tzinfo is None:
        raise RequestError(f"expires={text!r} has no UTC offset: write e.g. {value}+00:00, or a date")
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if when <= now - (dt.timedelta(days=1) if whole_day else dt.timedelta(0)):
        raise RequestError(f"expires={text!r} is not in the future (now: {timestamp(now)})")
    if when - now > dt.timedelta(days=MAX_WAIVER_DAYS):
        raise RequestError(f"expires={text!r} is more than {MAX_WAIVER_DAYS} days away; a waiver is for a hotfix")
    if whole_day:  # through that day: until the next midnight
        when += dt.timedelta(days=1)
    return when


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise RequestError(f"{what} is empty")
    if len(text) > limit:
        raise RequestError(f"{what} is longer than {limit} characters")
    if _CONTROL.search(text):
        raise RequestError(f"{what} holds control characters")
    return text


def new_waiver(
    *,
    model_sha256: str,
    dataset: str,
    rule_id: str,
    reason: str,
    expires: str,
    granted_by: str,
    now: dt.datetime,
) -> Waiver:
    """A waiver to record, every field checked (RequestError naming the field)."""
    sha = model_sha256.strip().lower()
    if not _SHA256.fullmatch(sha):
        raise RequestError(f"model={model_sha256!r} is not a SHA-256 (64 hex digits)")
    return Waiver(
        id=uuid.uuid4().hex,
        model_sha256=sha,
        dataset=_text(dataset, "dataset", MAX_NAME_CHARS),
        rule_id=_text(rule_id, "rule", MAX_NAME_CHARS),
        reason=_text(reason, "reason", MAX_REASON_CHARS),
        expires_at=timestamp(parse_expiry(expires, now=now)),
        granted_by=granted_by,
        granted_at=timestamp(now),
    )


# -- applying ---------------------------------------------------------------------------


def _waived(result: RuleResult, waiver: Waiver) -> RuleResult:
    return dataclasses.replace(
        result,
        status=Status.WAIVED,
        outcome=result.status,
        waiver=waiver.stamp(),
        message=f"waived until {waiver.expires_at} by {waiver.granted_by}: {waiver.reason} (was: {result.message})",
    )


def apply_waivers(verdict: Verdict, waivers: list[Waiver], *, at: dt.datetime) -> Verdict:
    """``verdict`` with each failing block rule that a waiver valid at ``at`` covers set to
    ``waived``, the waivers named in its ``waivers`` section and its decision taken again.
    Only a FAIL changes: a PASS has nothing to waive, an ERROR is never waived."""
    if verdict.decision is not Decision.FAIL or verdict.error is not None:
        return verdict
    model, dataset = verdict.model.get("sha256"), verdict.dataset.get("name")
    used: dict[str, Waiver] = {}
    rules = []
    for result in verdict.rules:
        found = next(
            (
                w
                for w in waivers
                if w.covers(model, dataset, result.id)
                and w.valid_at(at)
                and result.severity is Severity.BLOCK
                and result.status in WAIVABLE
            ),
            None,
        )
        if found is not None:
            used[found.id] = found
            result = _waived(result, found)
        rules.append(result)
    if not used:
        return verdict
    return dataclasses.replace(
        verdict,
        rules=rules,
        decision=decide(rules, at=at),
        waivers=[*(verdict.waivers or []), *(w.stamp() for w in used.values())],
    )
