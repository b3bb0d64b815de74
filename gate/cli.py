"""The ``gate`` command line. Exit codes (a contract): 0 PASS, 1 FAIL, 2 ERROR.

Flags and environment are read here and nowhere deeper (``GATE_TOKEN`` included: the
bearer token of the commands that talk to a server). With ``--format json`` stdout
carries exactly one JSON document; logs always go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate import __version__
from gate.engines import ENGINES
from gate.errors import GateError, RequestError
from gate.logs import configure as configure_logging
from gate.providers import PROVIDERS
from gate.report import RENDERERS
from gate.verdict import Decision, Verdict

if TYPE_CHECKING:
    from gate.client import GateClient

EXIT_ERROR = 2


def _write_atomic(path: Path, text: str) -> None:
    """Write the whole file or nothing: a reader never sees half a verdict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


REPORT_FILES = {"json": "verdict.json", "markdown": "report.md", "junit": "junit.xml", "html": "report.html"}


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report-dir",
        type=Path,
        help="also write every report there: " + ", ".join(REPORT_FILES.values()),
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")


def _client_options(p: argparse.ArgumentParser) -> None:
    """TLS, token and size options of the commands that talk to a gate server."""
    g = p.add_argument_group("connection (TLS, authentication)")
    g.add_argument("--tls", action="store_true", help="use TLS, trusting the system's roots (implied by --tls-*)")
    g.add_argument("--tls-ca", type=Path, metavar="FILE", help="PEM CA bundle that signed the server's certificate")
    g.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM client certificate (mutual TLS)")
    g.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM key of the client certificate")
    g.add_argument("--tls-server-name", metavar="NAME", help="name expected in the server's certificate")
    g.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the bearer token (default: $GATE_TOKEN; none: no token)",
    )
    g.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="N",
        help="largest gRPC message; match the server's max_message_bytes (default: 8 MiB)",
    )
    g.add_argument(
        "--load-balancing",
        choices=["pick_first", "round_robin"],
        help="with a --server that names several replicas (dns:///NAME:PORT): round_robin spreads the calls"
        " over all of them (default: pick_first)",
    )


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: --token-file, else $GATE_TOKEN, else none."""
    if args.token_file is not None:
        try:
            token: str = args.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise RequestError(f"--token-file: cannot read {args.token_file}: {e}") from e
        if not token:
            raise RequestError(f"--token-file: {args.token_file} is empty")
        return token
    return os.environ.get("GATE_TOKEN", "").strip() or None


def _client(args: argparse.Namespace, server: str, timeout: float) -> GateClient:
    from gate.client import GateClient
    from gate.config import DEFAULT_MAX_MESSAGE_BYTES

    return GateClient(
        server,
        timeout=timeout,
        tls=args.tls,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_server_name=args.tls_server_name,
        token=_token(args),
        max_message_bytes=args.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES,
        load_balancing=args.load_balancing,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gate", description="Production-readiness gate for ONNX image classifiers.")
    p.add_argument("--version", action="version", version=f"gate {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser(
        "eval",
        help="evaluate a model on a held-out set against a policy",
        description=(
            "Run MODEL on DATASET and judge it by POLICY. Exit 0 PASS, 1 FAIL, 2 ERROR. DATASET is a"
            " dataset spec YAML, an .npz file (x, y, optional classes; tensors go to the model as they"
            " are), an ImageFolder directory (class/image files; RGB, NCHW, pixels divided by 255, no"
            " resize) or a .csv/.jsonl manifest (path,label)."
        ),
    )
    ev.add_argument("--model", required=True, help="ONNX model file")
    ev.add_argument("--dataset", required=True, help="dataset spec YAML, .npz, ImageFolder directory or manifest")
    ev.add_argument("--policy", required=True, help="policy YAML file")
    ev.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format (default: text)")
    ev.add_argument("--output", type=Path, help="write the report to this file (atomically) instead of stdout")
    ev.add_argument("--provider", choices=PROVIDERS, default="auto", help="execution provider (default: auto)")
    ev.add_argument(
        "--batch-size",
        type=int,
        help="samples per inference batch (default: about 24 MiB of input; a fixed-batch model's own size)",
    )
    ev.add_argument(
        "--cache-dir",
        type=Path,
        help="tensor and result caches (default: $GATE_CACHE_DIR, else $XDG_CACHE_HOME/gate or ~/.cache/gate)",
    )
    ev.add_argument("--no-cache", action="store_true", help="decode and infer from scratch; write no cache")
    ev.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: in this process (default); ray: sharded over a Ray cluster (needs gate[ray])",
    )
    ev.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray: the cluster (auto, HOST:PORT, ray://HOST:10001); default: start a local one",
    )
    _evidence_options(ev)
    ev.add_argument(
        "--signing-key",
        type=Path,
        metavar="PATH",
        help="sign the verdict with this Ed25519 key (PEM PKCS #8; `gate key new`); needs --attestation-out",
    )
    ev.add_argument(
        "--attestation-out",
        type=Path,
        metavar="FILE",
        help="write the signed attestation (gate.attestation/v1) there; check it with `gate verify`",
    )
    _report_options(ev)

    ck = sub.add_parser(
        "check",
        help="gate a model through a gate server",
        description=(
            "Upload MODEL to the gate server and evaluate it on the server's registered held-out set"
            " DATASET with POLICY (a registered policy name, or a local policy file sent inline)."
            " Same exit codes and verdict JSON as `gate eval`: 0 PASS, 1 FAIL, 2 ERROR."
        ),
    )
    ck.add_argument("--server", required=True, help="HOST:PORT of the gate server")
    ck.add_argument("--model", required=True, type=Path, help="ONNX model file")
    ck.add_argument("--dataset", required=True, help="name of a dataset registered on the server")
    ck.add_argument("--policy", required=True, help="registered policy name, or a policy YAML file")
    ck.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format (default: text)")
    ck.add_argument("--output", type=Path, help="write the report to this file (atomically) instead of stdout")
    ck.add_argument("--provider", choices=PROVIDERS, help="execution provider (default: the server's)")
    ck.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label the evaluation (pipeline_id=..., git_sha=..., or any key); repeatable",
    )
    ck.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the verdict (default 3600)")
    _evidence_options(ck)
    ck.add_argument(
        "--attestation-out",
        type=Path,
        metavar="FILE",
        help="write the server's signed attestation of the verdict there (for `gate verify` in a deploy step)",
    )
    _report_options(ck)
    _client_options(ck)

    he = sub.add_parser("health", help="ask a gate server whether it is serving (exit 0) or not (exit 1)")
    he.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT (default 127.0.0.1:50051)")
    he.add_argument("--service", default="", help="service name to ask about (default: the whole server)")
    he.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    _client_options(he)

    sv = sub.add_parser("serve", help="run the gate server")
    sv.add_argument("--config", type=Path, help="configuration YAML (default: embedded defaults)")
    sv.add_argument("--listen", help="HOST:PORT to listen on (overrides the configuration)")

    hi = sub.add_parser("history", help="list recorded evaluations, newest first")
    src = hi.add_mutually_exclusive_group()
    src.add_argument("--server", help="ask a running gate server (HOST:PORT)")
    src.add_argument("--config", type=Path, help="read the audit database of this configuration")
    src.add_argument("--data-dir", type=Path, help="read the audit database in this data directory")
    hi.add_argument("--model", default="", help="only this model SHA-256")
    hi.add_argument("--dataset", default="", help="only this dataset")
    hi.add_argument("--policy", default="", help="only this policy")
    hi.add_argument("--verdict", choices=["PASS", "FAIL", "ERROR"], help="only this verdict")
    hi.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    hi.add_argument("--format", choices=["text", "json"], default="text")
    _client_options(hi)

    dm = sub.add_parser(
        "demo",
        help="the demo: gate a good and a bad digits model through a local server",
        description=(
            "Build an imbalanced held-out set from scikit-learn's digits, train a good model and one"
            " whose rare class was starved, start a server on the embedded defaults, gate both over"
            " gRPC and print the verdicts. Exit 0 when the good model passes and the bad one fails."
        ),
    )
    dm.add_argument("--data-dir", type=Path, default=Path("gate-data"), help="where data goes (default ./gate-data)")

    pol = sub.add_parser("policy", help="work with policy files")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    val = pol_sub.add_parser("validate", help="check a policy file; exit 0 when valid, 2 when not")
    val.add_argument("policy", help="policy YAML file")
    val.add_argument("--dataset", help="also check the class names against this dataset")

    fp = sub.add_parser(
        "fingerprint",
        help="perceptual hashes of training images, for `leakage` rules",
        description=(
            "Hash every image under TRAIN_DIR (any tree of image files, e.g. an ImageFolder) with a 64-bit"
            " perceptual hash that survives resizing and re-encoding, and write them to OUTPUT (a"
            " gate.fingerprint/v1 file). Give it to `gate eval --fingerprint` or `gate check --fingerprint`."
            " Exit 0 when written, 2 when an image cannot be read (nothing is written)."
        ),
    )
    fp.add_argument("train_dir", type=Path, metavar="TRAIN_DIR", help="directory of training images")
    fp.add_argument("-o", "--output", required=True, type=Path, metavar="OUTPUT", help="fingerprint file to write")
    fp.add_argument("--workers", type=int, help="parallel hashing workers (default: one per core)")

    tok = sub.add_parser("token", help="make bearer tokens for the server's `tokens:` configuration")
    tok_sub = tok.add_subparsers(dest="token_command", required=True)
    tok_sub.add_parser("new", help="print a fresh random token and its SHA-256 (the configuration takes the hash)")
    tok_sub.add_parser("hash", help="read a token on stdin and print its SHA-256")

    vf = sub.add_parser(
        "verify",
        help="check a signed verdict offline (for a deploy step)",
        description=(
            "Check an attestation (from `gate check --attestation-out`) with the gate server's public key"
            " and the model file, without the server. Exit 0: the signature is valid, the attestation is"
            " about this model and its verdict is PASS; 1: genuine and about this model, but the verdict"
            " is FAIL or ERROR; 2: anything that cannot be verified (altered document, wrong key, another"
            " model, unreadable files). The reason is one line on stderr."
        ),
    )
    vf.add_argument("--attestation", required=True, type=Path, metavar="FILE", help="gate.attestation/v1 JSON")
    vf.add_argument("--model", required=True, type=Path, metavar="FILE", help="the ONNX model about to be deployed")
    vf.add_argument(
        "--public-key",
        required=True,
        type=Path,
        metavar="FILE",
        help="the gate server's Ed25519 public key (PEM from `gate key show`, or raw 32 bytes in hex/base64)",
    )
    vf.add_argument("--dataset-sha256", metavar="HEX", help="also require the verdict to be on this dataset")
    vf.add_argument("--policy-sha256", metavar="HEX", help="also require the verdict to be under this policy")
    vf.add_argument("--format", choices=["text", "json"], default="text", help="json: one result document on stdout")

    key = sub.add_parser("key", help="the Ed25519 key that signs verdicts")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    show = key_sub.add_parser(
        "show",
        help="print the public key (PEM) of the server's signing key; its key id goes to stderr",
    )
    where = show.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="the key of this server configuration (signing_key)")
    where.add_argument("--data-dir", type=Path, help="the key generated in this data directory")
    where.add_argument("--signing-key", type=Path, metavar="PATH", help="this private key file")
    new = key_sub.add_parser("new", help="write a new signing key (mode 0600) and its public key (.pub)")
    new.add_argument("--out", required=True, type=Path, metavar="PATH", help="where the private key goes")
    return p


def _default_cache_dir() -> Path:
    if os.environ.get("GATE_CACHE_DIR"):
        return Path(os.environ["GATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gate"


def _evidence_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="CHAMPION.onnx",
        help="the model in production: run on the same samples, compared in the report, judged by `baseline` rules",
    )
    p.add_argument(
        "--fingerprint",
        type=Path,
        metavar="FILE",
        help="perceptual hashes of the training images (`gate fingerprint`), for `leakage` rules",
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from gate.cache import Caches
    from gate.evaluation import evaluate

    caches = None if args.no_cache else Caches.at(args.cache_dir or _default_cache_dir())
    key = None
    if (args.signing_key is None) != (args.attestation_out is None):
        print("gate eval: --signing-key and --attestation-out go together", file=sys.stderr)
        return EXIT_ERROR
    if args.signing_key is not None:
        from gate.attest import KeyFileError, load_signing_key

        try:
            key = load_signing_key(args.signing_key)
        except KeyFileError as e:
            print(f"gate eval: --signing-key: {e.message}", file=sys.stderr)
            return EXIT_ERROR
    progress = _Progress(args.quiet)
    try:
        verdict = evaluate(
            args.model,
            args.dataset,
            args.policy,
            provider=args.provider,
            batch_size=args.batch_size,
            caches=caches,
            progress=progress,
            baseline=args.baseline,
            fingerprint=args.fingerprint,
            engine=args.engine,
            ray_address=args.ray_address,
        )
    finally:
        progress.end()
    if verdict.error:
        logging.getLogger("gate").error("%s: %s", verdict.error["type"], verdict.error["message"])
    attestation = None
    if key is not None:
        from gate.attest import render_attestation, sign_verdict

        attestation = render_attestation(sign_verdict(verdict, key))
    written = _write_attestation(args.attestation_out, attestation, "eval")
    code = _emit(verdict, args, "eval")
    return code if written else EXIT_ERROR


def _write_attestation(path: Path | None, text: str | None, command: str) -> bool:
    """Write the attestation to ``path`` atomically; with none to write, remove what is
    there (a stale one must not pass for this verdict's). False when it cannot be written."""
    if path is None:
        return True
    try:
        if text is None:
            path.unlink(missing_ok=True)
            print(f"gate {command}: no attestation came with the verdict; nothing written to {path}", file=sys.stderr)
        else:
            _write_atomic(path, text)
    except OSError as e:
        print(f"gate {command}: cannot write {path}: {e.strerror}", file=sys.stderr)
        return False
    return True


def _emit(verdict: Verdict, args: argparse.Namespace, command: str) -> int:
    """Print (or write) the report; write the report directory and the CI job summary."""
    try:
        if args.report_dir is not None:
            for fmt, name in REPORT_FILES.items():
                _write_atomic(args.report_dir / name, RENDERERS[fmt](verdict))
            print(f"reports written to {args.report_dir}", file=sys.stderr)
        text = RENDERERS[args.format](verdict)
        if args.output is not None:
            _write_atomic(args.output, text)
            print(f"verdict {verdict.decision.value} written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except OSError as e:
        print(f"gate {command}: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(RENDERERS["markdown"](verdict) + "\n")
        except OSError as e:  # a missing job summary must not change the gate's answer
            print(f"gate {command}: cannot append to GITHUB_STEP_SUMMARY ({summary}): {e.strerror}", file=sys.stderr)
    return verdict.exit_code


def _labels(pairs: list[str]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RequestError(f"--label {pair!r} is not valid; it should be KEY=VALUE")
        if key in ("pipeline_id", "git_sha"):
            labels[key] = value
        else:
            extra[key] = value
    if extra:
        labels["extra"] = extra
    return labels


class _Progress:
    """A progress bar on stderr, only when stderr is a terminal and not ``--quiet``."""

    WIDTH = 30

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.shown = False
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self.last < 0.1):
            return
        self.last = now
        filled = self.WIDTH * done // max(total, 1)
        rate = done / max(now - self.started, 1e-9)
        sys.stderr.write(f"\rgate: [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} samples, {rate:,.0f}/s")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _cmd_check(args: argparse.Namespace) -> int:
    from gate.client import GateClientError

    progress = _Progress(args.quiet)
    policy_file = Path(args.policy)
    verdict: Verdict
    attestation: str | None = None
    try:
        labels = _labels(args.label)
        data = args.model.read_bytes()
        champion = args.baseline.read_bytes() if args.baseline is not None else None
        prints = args.fingerprint.read_bytes() if args.fingerprint is not None else b""
        policy_yaml = policy_file.read_text(encoding="utf-8") if policy_file.is_file() else None
        with _client(args, args.server, args.timeout) as client:
            client.upload_model(data, filename=args.model.name)
            if champion is not None:
                client.upload_model(champion, filename=args.baseline.name)
            evaluation = client.evaluate(
                hashlib.sha256(data).hexdigest(),
                args.dataset,
                policy_name=None if policy_yaml is not None else args.policy,
                policy_yaml=policy_yaml,
                labels=labels,
                provider=args.provider,
                model_name=str(args.model),
                on_progress=progress,
                baseline_sha256=hashlib.sha256(champion).hexdigest() if champion is not None else "",
                fingerprint=prints,
            )
        verdict = Verdict.from_dict(evaluation.document)
        attestation = evaluation.attestation
    except (GateClientError, RequestError) as e:
        verdict = Verdict(
            decision=Decision.ERROR,
            model={"sha256": None, "path": str(args.model)},
            error={"type": e.kind if not isinstance(e, GateClientError) else "ServiceError", "message": e.message},
        )
    except OSError as e:
        verdict = Verdict(
            decision=Decision.ERROR,
            model={"sha256": None, "path": str(args.model)},
            error={"type": "RequestError", "message": f"cannot read {e.filename}: {e.strerror}"},
        )
    finally:
        progress.end()
    if verdict.error:
        logging.getLogger("gate").error("%s: %s", verdict.error["type"], verdict.error["message"])
    written = _write_attestation(args.attestation_out, attestation, "check")
    code = _emit(verdict, args, "check")
    return code if written else EXIT_ERROR


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal

    from gate.config import load_config
    from gate.server import GateServer

    try:
        config = load_config(args.config, listen=args.listen)
        configure_logging(args.log_level, config.log_format)
        if args.config is None:
            from gate import demo

            demo.ensure_heldout(config.data_dir / "demo")
        server = GateServer(config)
    except GateError as e:
        print(f"gate serve: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=5.0))
    try:
        server.start()
        server.load()
        server.wait()
    except GateError as e:
        print(f"gate serve: {e.message}", file=sys.stderr)
        server.stop(grace=None)
        return EXIT_ERROR
    except KeyboardInterrupt:
        server.stop(grace=5.0)
    return 0


def _history_rows(records: list[dict[str, Any]]) -> list[str]:
    rows = [["created (UTC)", "evaluation", "verdict", "model", "dataset", "policy", "labels"]]
    for r in records:
        labels = r.get("labels") or {}
        shown = [f"{k}={v}" for k, v in labels.items() if k != "extra"] + [
            f"{k}={v}" for k, v in (labels.get("extra") or {}).items()
        ]
        rows.append(
            [
                r["created_at"],
                r["evaluation_id"][:12],
                r["verdict"] or r["state"].upper(),
                (r["model_sha256"] or "")[:12],
                r["dataset"],
                r["policy"],
                " ".join(shown),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cmd_history(args: argparse.Namespace) -> int:
    from gate.store import EvaluationRecord

    try:
        if args.server:
            with _client(args, args.server, 60) as client:
                found = client.list_verdicts(
                    model_sha256=args.model,
                    dataset=args.dataset,
                    policy=args.policy,
                    decision=args.verdict,
                    limit=args.limit,
                )
            found_records = [
                EvaluationRecord(
                    evaluation_id=r.evaluation_id,
                    state=r.state,
                    created_at=r.created_at,
                    finished_at=r.finished_at or None,
                    model_sha256=r.model_sha256,
                    model_name=None,
                    dataset=r.dataset,
                    policy=r.policy,
                    labels=json_labels(r.labels),
                    requested_provider="",
                    verdict=json.loads(r.verdict.verdict_json) if r.verdict.verdict_json else None,
                )
                for r in found
            ]
        else:
            from gate.config import load_config
            from gate.store import open_store, sqlite_path

            # the configuration's store: its SQLite file, or the PostgreSQL database replicas share
            if args.data_dir is not None:
                target = str(args.data_dir / "audit.sqlite3")
            else:
                target = load_config(args.config).store_target
            db = sqlite_path(target)
            if db is not None and not db.is_file():
                raise RequestError(f"no audit database at {db}")
            with open_store(target) as store:
                found_records = store.list(
                    model_sha256=args.model or None,
                    dataset=args.dataset or None,
                    policy=args.policy or None,
                    decision=args.verdict,
                    limit=args.limit,
                )
    except GateError as e:
        print(f"gate history: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"gate history: {e}", file=sys.stderr)
        return EXIT_ERROR
    records = [
        {
            "evaluation_id": r.evaluation_id,
            "state": r.state,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "model_sha256": r.model_sha256,
            "dataset": r.dataset,
            "policy": r.policy,
            "labels": r.labels,
            "verdict": r.decision,
        }
        for r in found_records
    ]
    if args.format == "json":
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(_history_rows(records)) + "\n")
    return 0


def json_labels(labels: Any) -> dict[str, Any]:
    from gate.server.convert import labels_to_dict

    return labels_to_dict(labels)


def _cmd_health(args: argparse.Namespace) -> int:
    try:
        with _client(args, args.server, args.timeout) as client:
            status = client.health(args.service)
    except GateError as e:
        print(f"gate health: {args.server}: {e.message}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


def _cmd_token(args: argparse.Namespace) -> int:
    from gate.server.auth import token_sha256

    if args.token_command == "new":
        token = secrets.token_urlsafe(32)  # 256 random bits: an unsalted hash is safe to store
        print(f"token: {token}")
        print(f"sha256: {token_sha256(token)}")
        return 0
    token = sys.stdin.read().strip()
    if not token:
        print("gate token hash: no token on stdin", file=sys.stderr)
        return EXIT_ERROR
    print(token_sha256(token))
    return 0


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from gate.leakage import fingerprint_command

    try:
        prints = fingerprint_command(args.train_dir, args.output, args.workers)
    except GateError as e:
        print(f"gate fingerprint: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{len(prints)} images fingerprinted into {args.output} (sha256 {prints.sha256})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from gate.attest import (
        MAX_DOCUMENT_BYTES,
        KeyFileError,
        Problem,
        Verification,
        load_public_key,
        verify_attestation,
    )

    try:
        public_key = load_public_key(args.public_key)
        with args.attestation.open("rb") as f:
            document = f.read(MAX_DOCUMENT_BYTES + 1)
        model_sha256 = _sha256_file(args.model)
        result = verify_attestation(
            document,
            public_key,
            model_sha256,
            dataset_sha256=args.dataset_sha256,
            policy_sha256=args.policy_sha256,
        )
    except KeyFileError as e:
        result = Verification(Problem.UNREADABLE, e.message)
    except OSError as e:
        result = Verification(Problem.UNREADABLE, f"cannot read {e.filename}: {e.strerror}")
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    elif result.ok:
        print(result.reason)
    if not result.ok:
        assert result.problem is not None
        print(f"gate verify: {result.problem.value}: {result.reason}", file=sys.stderr)
    return result.exit_code


def _cmd_key(args: argparse.Namespace) -> int:
    from gate.attest import KeyFileError, create_signing_key, key_id, load_signing_key, public_key_path, public_key_pem

    try:
        if args.key_command == "new":
            private = create_signing_key(args.out)
            print(f"key id: {key_id(private.public_key())}")
            print(f"public key: {public_key_path(args.out)}")
            return 0
        if args.signing_key is not None:
            path = args.signing_key
        elif args.data_dir is not None:
            path = args.data_dir / "signing" / "ed25519.pem"
        else:
            from gate.config import load_config

            path = load_config(args.config).signing_key_file
        if not path.exists():
            raise KeyFileError(
                f"no signing key at {path} (a server without signing_key creates it on first start;"
                f" `gate key new --out {path}` makes one)"
            )
        public = load_signing_key(path).public_key()
    except GateError as e:
        print(f"gate key {args.key_command}: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(public_key_pem(public))
    print(f"key id: {key_id(public)} ({path})", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gate.demo import run

    return run(args.data_dir)


def _cmd_policy_validate(args: argparse.Namespace) -> int:
    from gate.datasets import load_dataset
    from gate.policy import load_policy

    try:
        policy = load_policy(args.policy)
        where = ""
        if args.dataset:
            ds = load_dataset(args.dataset)
            policy.check_classes(ds.classes)
            where = f" against dataset '{ds.name}' ({len(ds.classes)} classes)"
    except GateError as e:
        print(f"{e.kind}: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    print(f"policy '{policy.name}' ({args.policy}) is valid{where}: {len(policy.rules)} rules, sha256 {policy.sha256}")
    for rule in policy.rules:
        print(f"  {rule.severity.value:5}  {rule.id}  ({rule.type})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # the server reports what it does; the other commands only problems
    level = (logging.INFO if args.command == "serve" else logging.WARNING, logging.INFO, logging.DEBUG)[
        min(args.verbose, 2)
    ]
    configure_logging(level, "text")
    args.log_level = level
    commands = {
        "eval": _cmd_eval,
        "check": _cmd_check,
        "serve": _cmd_serve,
        "history": _cmd_history,
        "demo": _cmd_demo,
        "health": _cmd_health,
        "policy": _cmd_policy_validate,
        "token": _cmd_token,
        "verify": _cmd_verify,
        "key": _cmd_key,
        "fingerprint": _cmd_fingerprint,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        return EXIT_ERROR


def entry() -> None:
    """Console-script entry point."""
    code = main()
    assert code in (d.exit_code for d in Decision) or code == EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    entry()
