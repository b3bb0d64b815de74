"""``gate eval``: judge a model on a local held-out set against a policy file, in this
process (or sharded over a Ray cluster), and optionally sign the verdict."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gate.cli.exit_codes import EXIT_ERROR
from gate.cli.verdict_output import Progress, add_format_options, add_report_options, deliver_verdict
from gate.providers import ENGINES, PROVIDERS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gate.datasets import Dataset


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    ev.add_argument("--policy", "--policy-file", dest="policy", required=True, help="policy YAML file")
    add_format_options(ev)
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
    ev.add_argument(
        "--no-cache",
        action="store_true",
        help="decode and infer from scratch: no tensor or result cache, nothing kept in memory between"
        " evaluations (file digests are still remembered by file identity)",
    )
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
    ev.add_argument(
        "--predictions-out",
        type=Path,
        metavar="FILE",
        help="write the per-sample predictions table there (.csv, or .parquet with gate[parquet]) on PASS or FAIL",
    )
    add_label_issues_option(ev)
    add_evidence_options(ev)
    _signing_options(ev)
    add_report_options(ev)
    ev.set_defaults(run=run)


def add_evidence_options(p: argparse.ArgumentParser) -> None:
    """The champion model and the training fingerprints, for ``baseline`` and ``leakage`` rules."""
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


def add_label_issues_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-issues-out",
        type=Path,
        metavar="FILE.csv",
        help="write the suspected label errors of the set there, for its owner (needs a `label_quality` rule)",
    )


def check_label_issues_out(args: argparse.Namespace) -> None:
    """Refuse, before any work, a ``--label-issues-out`` that is not a .csv file or that
    names the file another output of the command goes to (a RequestError)."""
    if args.label_issues_out is None:
        return
    from gate.heldout.issues_file import check_issues_path

    others = {f"--{name.replace('_', '-')}": getattr(args, name, None) for name in _OTHER_OUTPUTS}
    check_issues_path(args.label_issues_out, others=others)


#: The options of `gate eval` and `gate check` that write a file besides the suspects file.
_OTHER_OUTPUTS = ("output", "predictions_out", "attestation_out")


def _signing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--signing-key",
        type=Path,
        metavar="PATH",
        help="sign the verdict with this Ed25519 key (PEM PKCS #8; `gate key new`); needs --attestation-out",
    )
    p.add_argument(
        "--attestation-out",
        type=Path,
        metavar="FILE",
        help="write the signed attestation (gate.attestation/v1) there; check it with `gate verify`",
    )


def default_cache_dir() -> Path:
    if os.environ.get("GATE_CACHE_DIR"):
        return Path(os.environ["GATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gate"


class _SigningKeyError(Exception):
    """The signing options cannot be used; the message is the line for stderr."""


def _signing_key(args: argparse.Namespace) -> Ed25519PrivateKey | None:
    """The key that signs the verdict, loaded before the (long) evaluation starts."""
    if (args.signing_key is None) != (args.attestation_out is None):
        raise _SigningKeyError("--signing-key and --attestation-out go together")
    if args.signing_key is None:
        return None
    from gate.attest import KeyFileError, load_signing_key

    try:
        return load_signing_key(args.signing_key)
    except KeyFileError as e:
        raise _SigningKeyError(f"--signing-key: {e.message}") from e


class _DatasetLoad:
    """The dataset loaded on a thread while the main thread imports the rest of gate
    (ONNX Runtime, the evaluation, the policy engine): reading, checking and hashing a
    set release the GIL for most of their time, importing holds it, so on two cores the
    two overlap. A set that cannot be loaded is loaded again by ``evaluate``, which
    reports the error as it always does (after a bad policy, for one)."""

    def __init__(self, path: str, digests: Path) -> None:
        self._dataset: Dataset | None = None
        self._thread = threading.Thread(target=self._load, args=(path, digests), name="gate-dataset", daemon=True)
        self._thread.start()

    def _load(self, path: str, digests: Path) -> None:
        try:
            from gate.datasets import load_dataset

            self._dataset = load_dataset(path, digest_cache=digests)
        except Exception:  # evaluate() loads it again and reports the error as and when it always does
            self._dataset = None

    def result(self) -> Dataset | None:
        """The loaded dataset, or None when it could not be loaded."""
        self._thread.join()
        return self._dataset


def _loaded_or_path(loading: _DatasetLoad, path: str) -> Dataset | str:
    dataset = loading.result()
    return path if dataset is None else dataset


def run(args: argparse.Namespace) -> int:
    from gate.errors import RequestError  # both light: the dataset's load below starts before the heavy imports
    from gate.heldout.issues_file import deliver_label_issues

    try:
        key = _signing_key(args)
        check_label_issues_out(args)
    except _SigningKeyError as e:
        print(f"gate eval: {e}", file=sys.stderr)
        return EXIT_ERROR
    except RequestError as e:
        print(f"gate eval: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    root = args.cache_dir or default_cache_dir()
    loading = _DatasetLoad(args.dataset, root / "digests")  # the digest cache of Caches.at and digests_only
    from gate.cache import Caches
    from gate.evaluation import evaluate

    caches = Caches.digests_only(root) if args.no_cache else Caches.at(root)
    progress = Progress(args.quiet)
    try:
        verdict = evaluate(
            args.model,
            _loaded_or_path(loading, args.dataset),
            args.policy,
            provider=args.provider,
            batch_size=args.batch_size,
            caches=caches,
            progress=progress,
            baseline=args.baseline,
            fingerprint=args.fingerprint,
            engine=args.engine,
            ray_address=args.ray_address,
            predictions_out=args.predictions_out,
        )
    finally:
        progress.end()
    attestation = None
    if key is not None:
        from gate.attest import render_attestation, sign_verdict

        attestation = render_attestation(sign_verdict(verdict, key))
    code = deliver_verdict(verdict, attestation, args, "eval")
    return code if deliver_label_issues(verdict, args.label_issues_out, "eval") else EXIT_ERROR
