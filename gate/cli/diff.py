"""``gate diff A B``: what changed between two evaluations (evaluation ids or verdict
JSON files): metric, per-class and per-slice deltas, rules that changed status, and the
samples that became wrong or right."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.cli.connection import add_client_options, open_client
from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError, NotFoundError, RequestError

if TYPE_CHECKING:
    from gate.diff import Outcomes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    df = sub.add_parser("diff", help="compare two evaluations (ids or verdict JSON files)")
    df.add_argument("a", help="the earlier evaluation: an evaluation id or a verdict JSON file")
    df.add_argument("b", help="the later evaluation: an evaluation id or a verdict JSON file")
    src = df.add_mutually_exclusive_group()
    src.add_argument("--server", help="read evaluation ids from a running gate server (HOST:PORT)")
    src.add_argument("--config", type=Path, help="read evaluation ids from this configuration's audit database")
    src.add_argument("--data-dir", type=Path, help="read evaluation ids from the audit database in this data directory")
    df.add_argument("--predictions-a", type=Path, metavar="CSV", help="A's predictions file (--predictions-out)")
    df.add_argument("--predictions-b", type=Path, metavar="CSV", help="B's predictions file (--predictions-out)")
    df.add_argument(
        "--format",
        choices=["text", "markdown", "html", "json"],
        default="text",
        help="how to print the diff (json: gate.diff/v1)",
    )
    add_client_options(df)
    df.set_defaults(run=run)


class _Source:
    """Where evaluation ids are read: a server, or an audit database and its results cache."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def verdict(self, evaluation_id: str) -> dict[str, Any]:
        args = self.args
        if args.server:
            with open_client(args, args.server, 60) as client:
                doc: dict[str, Any] = json.loads(client.get_verdict(evaluation_id).verdict.verdict_json or "null")
        else:
            from gate.store import open_store

            with open_store(self._store_target()) as store:
                record = store.get(evaluation_id)
            doc = record.verdict if record is not None and record.verdict is not None else {}
        if not doc:
            raise NotFoundError(f"no finished evaluation with id {evaluation_id!r}")
        return doc

    def _store_target(self) -> str:
        from gate.config import load_config
        from gate.store import sqlite_path

        if self.args.data_dir is not None:
            target = str(self.args.data_dir / "audit.sqlite3")
        else:
            target = load_config(self.args.config).store_target
        db = sqlite_path(target)
        if db is not None and not db.is_file():
            raise RequestError(f"no audit database at {db}")
        return target

    def outcomes(self, doc: dict[str, Any]) -> Outcomes | None:
        from gate.diff import outcomes_of_csv, outcomes_of_table

        if self.args.server:
            import tempfile

            with (
                tempfile.TemporaryDirectory(prefix="gate-diff-") as tmp,
                open_client(self.args, self.args.server, 300) as c,
            ):
                try:
                    path = c.save_predictions(str(doc["evaluation_id"]), Path(tmp) / "predictions.csv")
                except GateError:
                    return None  # not kept any more: the diff says samples were not compared
                return outcomes_of_csv(path.read_bytes())
        from gate.cache import ResultCache, results_key
        from gate.config import load_config

        cache = (
            self.args.data_dir / "cache" if self.args.data_dir is not None else load_config(self.args.config).cache_dir
        )
        key = results_key(doc["model"]["sha256"], doc["dataset"]["sha256"], doc["runtime"]["provider"])
        table = ResultCache(cache / "results").get(key)
        return None if table is None else outcomes_of_table(table)


def _verdict_file(path: Path) -> dict[str, Any]:
    from gate.verdict import SCHEMA

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RequestError(f"{path} is not a verdict JSON document ({SCHEMA}): {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RequestError(f"{path} is not a verdict JSON document ({SCHEMA})")
    problem = _shape_problem(doc)
    if problem:
        raise RequestError(f"{path} is not a verdict JSON document ({SCHEMA}): {problem}")
    return doc


def _shape_problem(doc: dict[str, Any]) -> str | None:
    """What in a (hand-edited) verdict file the diff could not read, or None."""
    for name in ("model", "dataset", "policy", "metrics"):
        if doc.get(name) is not None and not isinstance(doc[name], dict):
            return f"{name!r} is not an object"
    per_class = (doc.get("metrics") or {}).get("per_class") or {}
    if not isinstance(per_class, dict) or not all(isinstance(v, dict) for v in per_class.values()):
        return "'metrics.per_class' is not an object of objects"
    rules = doc.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in rules):
        return "'rules' is not a list of objects with an 'id'"
    return None


def _side(
    args: argparse.Namespace, source: _Source, which: str, predictions: Path | None
) -> tuple[dict[str, Any], Outcomes | None]:
    from gate.diff import outcomes_of_csv

    path = Path(which)
    if path.is_file():
        doc = _verdict_file(path)
        found = None
    elif args.server or args.data_dir or args.config:
        doc = source.verdict(which)
        found = source.outcomes(doc) if predictions is None else None
    else:
        raise RequestError(f"{which!r} is not a file; to compare evaluation ids give --server, --data-dir or --config")
    if predictions is not None:
        try:
            found = outcomes_of_csv(predictions.read_bytes())
        except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            raise RequestError(f"{predictions} is not a predictions CSV file: {e}") from None
    return doc, found


def run(args: argparse.Namespace) -> int:
    from gate import diff

    source = _Source(args)
    try:
        a, a_outcomes = _side(args, source, args.a, args.predictions_a)
        b, b_outcomes = _side(args, source, args.b, args.predictions_b)
        found = diff.diff_verdicts(a, b, a_outcomes=a_outcomes, b_outcomes=b_outcomes)
    except GateError as e:
        print(f"gate diff: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"gate diff: {e}", file=sys.stderr)
        return EXIT_ERROR
    renderers: dict[str, Callable[[diff.VerdictDiff], str]] = {
        "text": diff.render_text,
        "markdown": diff.render_markdown,
        "html": diff.render_html,
        "json": diff.VerdictDiff.to_json,
    }
    sys.stdout.write(renderers[args.format](found))
    return 0
