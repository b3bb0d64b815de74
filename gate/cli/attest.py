"""Signed verdicts: ``gate verify`` (check an attestation offline, for a deploy step) and
``gate key`` (show or make the Ed25519 key that signs verdicts)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError

if TYPE_CHECKING:
    from gate.attest import Verification


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_verify(sub)
    _register_key(sub)


def _register_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    vf.set_defaults(run=run_verify)


def _register_key(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    show.set_defaults(run=run_key)
    new = key_sub.add_parser("new", help="write a new signing key (mode 0600) and its public key (.pub)")
    new.add_argument("--out", required=True, type=Path, metavar="PATH", help="where the private key goes")
    new.set_defaults(run=run_key)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verification(args: argparse.Namespace) -> Verification:
    from gate.attest import MAX_DOCUMENT_BYTES, KeyFileError, Problem, Verification, load_public_key, verify_attestation

    try:
        public_key = load_public_key(args.public_key)
        with args.attestation.open("rb") as f:
            document = f.read(MAX_DOCUMENT_BYTES + 1)
        return verify_attestation(
            document,
            public_key,
            _sha256_file(args.model),
            dataset_sha256=args.dataset_sha256,
            policy_sha256=args.policy_sha256,
        )
    except KeyFileError as e:
        return Verification(Problem.UNREADABLE, e.message)
    except OSError as e:
        return Verification(Problem.UNREADABLE, f"cannot read {e.filename}: {e.strerror}")


def run_verify(args: argparse.Namespace) -> int:
    result = _verification(args)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    elif result.ok:
        print(result.reason)
    if not result.ok:
        assert result.problem is not None
        print(f"gate verify: {result.problem.value}: {result.reason}", file=sys.stderr)
    return result.exit_code


def _signing_key_path(args: argparse.Namespace) -> Path:
    """The private key ``gate key show`` reads: the one named, or the server's."""
    if args.signing_key is not None:
        path: Path = args.signing_key
        return path
    if args.data_dir is not None:
        return Path(args.data_dir) / "signing" / "ed25519.pem"
    from gate.config import load_config

    return load_config(args.config).signing_key_file


def run_key(args: argparse.Namespace) -> int:
    from gate.attest import KeyFileError, create_signing_key, key_id, load_signing_key, public_key_path, public_key_pem

    try:
        if args.key_command == "new":
            private = create_signing_key(args.out)
            print(f"key id: {key_id(private.public_key())}")
            print(f"public key: {public_key_path(args.out)}")
            return 0
        path = _signing_key_path(args)
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
