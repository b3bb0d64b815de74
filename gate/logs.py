"""Logging set-up for the command line and the server: plain text for people, or one
JSON object per line for log pipelines, each carrying the evaluation id it belongs to.

The id is taken from the record (``extra={"evaluation_id": ...}``) or from the
:data:`EVALUATION_ID` context variable, which the server sets on the thread that runs an
evaluation, so library code logs without knowing about it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from contextvars import ContextVar
from typing import Literal

EVALUATION_ID: ContextVar[str | None] = ContextVar("gate_evaluation_id", default=None)


class _EvaluationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "evaluation_id", None) is None:
            record.evaluation_id = EVALUATION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        evaluation_id = getattr(record, "evaluation_id", None)
        if evaluation_id:
            entry["evaluation_id"] = evaluation_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        evaluation_id = getattr(record, "evaluation_id", None)
        return f"{text} [evaluation {evaluation_id}]" if evaluation_id else text


def configure(level: int, fmt: Literal["text", "json"] = "text") -> None:
    """Send gate's logs (and everything else's) to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_EvaluationIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
