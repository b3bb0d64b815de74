"""The verdict as one JSON document (schema ``gate.verdict/v1``, see README.md, "Verdict JSON")."""

from __future__ import annotations

import json
import math
from typing import Any

from gate.verdict import Verdict


def _finite(obj: Any) -> Any:
    # JSON has no NaN/Infinity; an undefined or unbounded number is null
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def render_json(verdict: Verdict) -> str:
    return json.dumps(_finite(verdict.to_dict()), indent=2, allow_nan=False) + "\n"
