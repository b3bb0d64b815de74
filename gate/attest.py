"""Signed verdicts: the ``gate.attestation/v1`` document, and checking one offline.

The server signs every verdict it returns with its Ed25519 key, so that a deploy step
can later check, with nothing but the server's public key and the model file, that the
gate really passed that exact model. The document (one JSON object)::

    {
      "statement": {
        "schema": "gate.attestation/v1",
        "model_sha256": "<64 hex digits: SHA-256 of the model file>",
        "dataset": {"name": "<name>", "sha256": "<64 hex>"},
        "policy": {"name": "<name>", "sha256": "<64 hex>"},
        "verdict": "PASS | FAIL | ERROR",
        "time": "2025-01-31T12:00:00Z",
        "evaluation_id": "<the server's evaluation id>",
        "key_id": "<64 hex: SHA-256 of the signer's raw 32-byte public key>"
      },
      "algorithm": "ed25519",
      "key_id": "<the same key id>",
      "signature": "<base64 (RFC 4648, with padding) of the 64-byte Ed25519 signature>"
    }

When waivers let the verdict pass (see :mod:`gate.waivers`), the statement also has
``"waivers"``: a list of ``{"id", "rule", "reason", "expires_at", "granted_by",
"granted_at"}`` objects of strings, one per waiver applied; a statement without waivers
has no such field, so attestations signed before waivers existed verify unchanged.

``time`` is the UTC time of the signing (ISO 8601, seconds, ``Z``). A value that an
evaluation did not reach is ``null`` (an ERROR verdict may have no dataset SHA-256; a
local ``gate eval`` has no evaluation id). Every value in a statement is a string,
``null``, an object of those or the ``waivers`` list: no numbers.

**The signed bytes** are the statement's canonical JSON, exactly what Python's
``json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
gives, encoded as UTF-8: object keys sorted by code point, no whitespace at all, non-ASCII
characters written as themselves, and in strings only ``"`` and ``\\`` escaped with a
backslash, plus the control characters below U+0020 (as ``\\n``, ``\\r``, ``\\t``,
``\\b``, ``\\f``, else ``\\u00xx`` with lower-case hex). For statements (no numbers, ASCII
keys) this is RFC 8785 (JCS). The signature is Ed25519 (RFC 8032, pure, no pre-hash) over
those bytes.

**Verifying** (:func:`verify_attestation`, ``gate verify``) re-encodes the statement it
parsed, so whitespace or key order in the file do not matter, but any changed value does.
It accepts a document only when all of this holds, and otherwise names the first thing
that does not (:class:`Problem`): it is a JSON object (no duplicate keys) with exactly the
fields above; ``schema`` is ``gate.attestation/v1``; ``algorithm`` is ``ed25519``; both
``key_id`` values equal the id of the public key given; the signature is valid; the
optional pins (dataset, policy SHA-256) match; ``model_sha256`` equals the SHA-256 of
the model given; and ``verdict`` is ``PASS``. Nothing escapes as an exception: malformed
input is a refusal.

Keys are PEM files: the private key PKCS #8 (what ``openssl genpkey -algorithm ed25519``
writes, unencrypted), the public key SubjectPublicKeyInfo; a public key may also be given
as its raw 32 bytes in hex or base64.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate.atomic import atomic_write
from gate.errors import RequestError
from gate.verdict import Verdict

log = logging.getLogger(__name__)

SCHEMA = "gate.attestation/v1"
ALGORITHM = "ed25519"
DOCUMENT_FIELDS = ("statement", "algorithm", "key_id", "signature")
STATEMENT_FIELDS = ("schema", "model_sha256", "dataset", "policy", "verdict", "time", "evaluation_id", "key_id")
OPTIONAL_STATEMENT_FIELDS = ("waivers",)  # present only when waivers applied
WAIVER_FIELDS = ("id", "rule", "reason", "expires_at", "granted_by", "granted_at")
NAMED_FIELDS = ("name", "sha256")  # the fields of `dataset` and `policy`
VERDICTS = ("PASS", "FAIL", "ERROR")
MAX_DOCUMENT_BYTES = 1 << 20  # an attestation is a few hundred bytes
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyFileError(RequestError):
    """A key file is missing, unreadable, or not an Ed25519 key."""


# -- keys ----------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id: the SHA-256 (hex) of its raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM SubjectPublicKeyInfo (``-----BEGIN PUBLIC KEY-----``)."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(
        "ascii"
    )


def public_key_path(private_key_path: Path) -> Path:
    """Where the public key of ``private_key_path`` is written: the same name ending ``.pub``."""
    path = Path(private_key_path)
    return path.with_name(path.name + ".pub") if path.suffix == ".pub" else path.with_suffix(".pub")


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise KeyFileError(f"{what} {path} does not exist") from e
    except IsADirectoryError as e:
        raise KeyFileError(f"cannot read {what} {path}: it is a directory") from e
    except OSError as e:
        raise KeyFileError(f"cannot read {what} {path}: {e.strerror or e}") from e


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM PKCS #8, unencrypted)."""
    path = Path(path)
    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"signing key {path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
    return key


def _write_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (mode 0600) unless it exists; all or nothing. False when
    another writer got there first."""
    try:
        atomic_write(path, data, fsync=True, mode=0o600, replace=False)  # never replaces an existing key
    except FileExistsError:
        return False
    return True


def write_public_key(private_key: Ed25519PrivateKey, path: Path) -> None:
    """Write the public key of ``private_key`` to ``path`` as PEM, atomically (mode 0644)."""
    atomic_write(path, public_key_pem(private_key.public_key()), fsync=True, mode=0o644)


def create_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """A fresh key written to ``path`` (mode 0600, never over an existing file) with its
    public key next to it (:func:`public_key_path`)."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _write_new(path, pem):
            raise KeyFileError(f"signing key {path} already exists; it was not replaced")
        write_public_key(key, public_key_path(path))
    except OSError as e:
        raise KeyFileError(f"cannot write signing key {path}: {e.strerror or e}") from e
    return key


def load_or_create_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The key in ``path``; on first use, a new one created there (see
    :func:`create_signing_key`). A file that exists but cannot be read or is not an
    Ed25519 key is an error, never replaced."""
    path = Path(path)
    if not os.path.lexists(path):
        try:
            key = create_signing_key(path)
        except KeyFileError:
            if not os.path.lexists(path):
                raise
            # another process created it first: use theirs
        else:
            log.info("generated a new Ed25519 signing key in %s (key id %s)", path, key_id(key.public_key()))
            return key
    key = load_signing_key(path)
    pub = public_key_path(path)
    expected = public_key_pem(key.public_key())
    try:
        if not pub.is_file() or pub.read_text(encoding="ascii") != expected:
            write_public_key(key, pub)
    except (OSError, UnicodeDecodeError) as e:  # a convenience copy; the private key is what counts
        log.warning("cannot write the public key next to the signing key (%s): %s", pub, e)
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """An Ed25519 public key from ``path``: PEM SubjectPublicKeyInfo, or the raw 32 bytes
    written as 64 hex digits or in base64."""
    path = Path(path)
    data = _read_key_file(path, "public key")
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise KeyFileError(f"public key {path} is not a PEM public key: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"public key {path} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
        return key
    text = data.strip()
    raw: bytes | None = None
    try:
        if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
            raw = bytes.fromhex(text.decode("ascii"))
        else:
            raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = None
    if raw is None or len(raw) != 32:
        raise KeyFileError(f"public key {path} is neither PEM nor a raw 32-byte Ed25519 key in hex or base64")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyFileError(f"public key {path} is not a valid Ed25519 key: {e}") from e


# -- signing -------------------------------------------------------------------------


def canonical_json(statement: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8 (see the module doc)."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _named(section: Mapping[str, Any] | None) -> dict[str, str | None]:
    section = section or {}
    return {"name": section.get("name") or None, "sha256": section.get("sha256") or None}


def statement_for(verdict: Verdict, signer_key_id: str, time: dt.datetime | None = None) -> dict[str, Any]:
    """What an attestation of ``verdict`` states."""
    when = (time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    model_sha = verdict.model.get("sha256")
    waivers = [{k: str(w.get(k) or "") for k in WAIVER_FIELDS} for w in verdict.waivers or ()]
    return {
        **({"waivers": waivers} if waivers else {}),
        "schema": SCHEMA,
        "model_sha256": model_sha.lower() if isinstance(model_sha, str) and model_sha else None,
        "dataset": _named(verdict.dataset),
        "policy": _named(verdict.policy),
        "verdict": verdict.decision.value,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "evaluation_id": verdict.evaluation_id or None,
        "key_id": signer_key_id,
    }


def sign_statement(statement: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The attestation document of ``statement``, signed with ``key``."""
    signer = key_id(key.public_key())
    if statement.get("key_id") != signer:
        raise ValueError("the statement's key_id is not the signing key's id")
    signature = key.sign(canonical_json(statement))
    return {
        "statement": dict(statement),
        "algorithm": ALGORITHM,
        "key_id": signer,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def sign_verdict(verdict: Verdict, key: Ed25519PrivateKey, *, time: dt.datetime | None = None) -> dict[str, Any]:
    """A signed ``gate.attestation/v1`` document for ``verdict`` (PASS, FAIL or ERROR)."""
    return sign_statement(statement_for(verdict, key_id(key.public_key()), time), key)


def render_attestation(document: Mapping[str, Any]) -> str:
    """The document as the text written to files and sent with verdicts."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- verifying -----------------------------------------------------------------------


class Problem(enum.StrEnum):
    """Why an attestation was not accepted."""

    BAD_JSON = "bad-json"  # not a JSON object (or duplicate keys, NaN, too large)
    MISSING_FIELD = "missing-field"
    MALFORMED = "malformed"  # an unexpected field, or a value of the wrong form
    WRONG_SCHEMA = "wrong-schema"
    UNKNOWN_ALGORITHM = "unknown-algorithm"
    KEY_MISMATCH = "key-mismatch"  # signed by another key than the one given
    BAD_SIGNATURE = "bad-signature"  # the statement was changed, or the signature is not this key's
    DATASET_MISMATCH = "dataset-mismatch"  # not the dataset the verifier pinned
    POLICY_MISMATCH = "policy-mismatch"  # not the policy the verifier pinned
    MODEL_MISMATCH = "model-mismatch"  # the attestation is about another model
    NOT_PASS = "not-pass"  # genuine, about this model, but the verdict is FAIL or ERROR
    UNREADABLE = "unreadable"  # the attestation, model or key file could not be read (gate verify)


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_attestation`."""

    problem: Problem | None  # None: verified PASS
    reason: str  # one line, for people
    statement: dict[str, Any] | None = None  # set once the signature has been verified

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def genuine(self) -> bool:
        """The signature is valid for the given key (the statement may still not be a PASS)."""
        return self.statement is not None

    @property
    def exit_code(self) -> int:
        """0 verified PASS; 1 a genuine attestation of this model whose verdict is not PASS;
        2 anything that could not be verified."""
        if self.problem is None:
            return 0
        return 1 if self.problem is Problem.NOT_PASS else 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "exit_code": self.exit_code,
            "problem": self.problem.value if self.problem else None,
            "reason": self.reason,
            "statement": self.statement,
        }


class _Refused(Exception):
    def __init__(self, problem: Problem, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(Problem.BAD_JSON, f"the document is not valid: key {k!r} appears twice in one object")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise _Refused(Problem.BAD_JSON, f"the document is not valid JSON: {name} is not a JSON value")


def parse_document(document: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(document, Mapping):
        return dict(document)
    if len(document) > MAX_DOCUMENT_BYTES:
        raise _Refused(Problem.BAD_JSON, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
        parsed = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Refused(Problem.BAD_JSON, f"the document is not valid JSON: {e}") from e
    if not isinstance(parsed, dict):
        raise _Refused(Problem.BAD_JSON, f"the document is a JSON {type(parsed).__name__}, not an object")
    return parsed


def _fields(obj: Any, where: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Refused(Problem.MALFORMED, f"{where} is not an object")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise _Refused(Problem.MISSING_FIELD, f"{where} lacks {', '.join(missing)}")
    extra = sorted(set(obj) - set(fields) - set(optional))
    if extra:
        raise _Refused(Problem.MALFORMED, f"{where} has unexpected fields: {', '.join(map(str, extra))}")
    return obj


def _string(value: Any, where: str, *, nullable: bool = False, hex64: bool = False) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise _Refused(Problem.MALFORMED, f"{where} should be a string{' or null' if nullable else ''}")
    if hex64 and not _HEX64.fullmatch(value):
        raise _Refused(Problem.MALFORMED, f"{where} should be 64 lower-case hex digits")


def _check_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """The statement, once the document has every field in the right form."""
    missing = [f for f in DOCUMENT_FIELDS if f not in doc]
    if missing:
        raise _Refused(Problem.MISSING_FIELD, f"the document lacks {', '.join(missing)}")
    statement = doc["statement"]
    if not isinstance(statement, dict):
        raise _Refused(Problem.MALFORMED, "statement is not an object")
    if "schema" not in statement:
        raise _Refused(Problem.MISSING_FIELD, "statement lacks schema")
    if statement["schema"] != SCHEMA:
        raise _Refused(Problem.WRONG_SCHEMA, f"statement.schema is {statement['schema']!r}, not {SCHEMA!r}")
    _fields(doc, "the document", DOCUMENT_FIELDS)
    _fields(statement, "statement", STATEMENT_FIELDS, OPTIONAL_STATEMENT_FIELDS)
    if "waivers" in statement:
        _check_waivers(statement["waivers"])
    if doc["algorithm"] != ALGORITHM:
        raise _Refused(Problem.UNKNOWN_ALGORITHM, f"algorithm {doc['algorithm']!r} is not {ALGORITHM!r}")
    _string(doc["key_id"], "key_id", hex64=True)
    _string(doc["signature"], "signature")
    _string(statement["model_sha256"], "statement.model_sha256", nullable=True, hex64=True)
    for section in ("dataset", "policy"):
        named = _fields(statement[section], f"statement.{section}", NAMED_FIELDS)
        _string(named["name"], f"statement.{section}.name", nullable=True)
        _string(named["sha256"], f"statement.{section}.sha256", nullable=True, hex64=True)
    if statement["verdict"] not in VERDICTS:
        raise _Refused(Problem.MALFORMED, f"statement.verdict should be one of {', '.join(VERDICTS)}")
    _string(statement["time"], "statement.time")
    _string(statement["evaluation_id"], "statement.evaluation_id", nullable=True)
    _string(statement["key_id"], "statement.key_id", hex64=True)
    return statement


def _check_waivers(waivers: Any) -> None:
    if not isinstance(waivers, list) or not waivers:
        raise _Refused(Problem.MALFORMED, "statement.waivers should be a non-empty list")
    for i, waiver in enumerate(waivers):
        for name in WAIVER_FIELDS:
            _string(_fields(waiver, f"statement.waivers[{i}]", WAIVER_FIELDS)[name], f"statement.waivers[{i}].{name}")


def waiver_lines(statement: Mapping[str, Any]) -> list[str]:
    """One line per waiver a (verified) statement names, for people."""
    return [
        f"rule {w['rule']!r} waived until {w['expires_at']} by {w['granted_by']} (waiver {w['id']}): {w['reason']}"
        for w in statement.get("waivers") or ()
    ]


def _model_sha256(model: bytes | str) -> str:
    if isinstance(model, bytes):
        return hashlib.sha256(model).hexdigest()
    if not _HEX64.fullmatch(model.lower()):
        raise _Refused(Problem.MODEL_MISMATCH, "the model's SHA-256 given is not 64 hex digits")
    return model.lower()


def _verify(
    document: str | bytes | Mapping[str, Any],
    public_key: Ed25519PublicKey,
    model: bytes | str,
    dataset_sha256: str | None,
    policy_sha256: str | None,
) -> Verification:
    doc = parse_document(document)
    statement = _check_shape(doc)
    expected = key_id(public_key)
    if doc["key_id"] != statement["key_id"]:
        raise _Refused(Problem.KEY_MISMATCH, "the document's key_id differs from the key_id in its statement")
    if statement["key_id"] != expected:
        raise _Refused(
            Problem.KEY_MISMATCH,
            f"signed by key {statement['key_id'][:16]}…, not by the public key given ({expected[:16]}…)",
        )
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
    except (ValueError, binascii.Error) as e:
        raise _Refused(Problem.BAD_SIGNATURE, "the signature is not valid base64") from e
    try:
        message = canonical_json(statement)
    except (ValueError, UnicodeEncodeError) as e:  # e.g. a lone surrogate in a string
        raise _Refused(Problem.MALFORMED, f"the statement cannot be encoded as UTF-8 JSON: {e}") from e
    try:
        public_key.verify(signature, message)
    except InvalidSignature as e:
        raise _Refused(
            Problem.BAD_SIGNATURE, "the signature does not match the statement: the document was altered"
        ) from e
    genuine = dict(statement)
    for section, pinned, problem in (
        ("dataset", dataset_sha256, Problem.DATASET_MISMATCH),
        ("policy", policy_sha256, Problem.POLICY_MISMATCH),
    ):
        if pinned is not None and statement[section]["sha256"] != pinned.lower():
            return Verification(
                problem,
                f"the verdict was reached with {section} {statement[section]['name']!r} "
                f"(sha256 {statement[section]['sha256']}), not the required sha256 {pinned.lower()}",
                genuine,
            )
    sha = _model_sha256(model)
    if statement["model_sha256"] != sha:
        return Verification(
            Problem.MODEL_MISMATCH,
            f"the attestation is for model {statement['model_sha256']}, but the model given hashes to {sha}",
            genuine,
        )
    evaluation = f"evaluation {statement['evaluation_id']}, " if statement["evaluation_id"] else ""
    where = (
        f"model {sha[:12]}… on dataset {statement['dataset']['name']!r} under policy "
        f"{statement['policy']['name']!r} ({evaluation}signed {statement['time']} by key {expected[:16]}…)"
    )
    if statement["verdict"] != "PASS":
        return Verification(
            Problem.NOT_PASS, f"genuine attestation, but the verdict is {statement['verdict']}: {where}", genuine
        )
    waived = waiver_lines(statement)
    if waived:
        where += f"; with {len(waived)} waiver(s): " + "; ".join(waived)
    return Verification(None, f"verified PASS: {where}", genuine)


def verify_attestation(
    document: str | bytes | Mapping[str, Any],
    public_key: Ed25519PublicKey,
    model: bytes | str,
    *,
    dataset_sha256: str | None = None,
    policy_sha256: str | None = None,
) -> Verification:
    """Check an attestation against the signer's public key and the model (its bytes, or
    its SHA-256 in hex). ``dataset_sha256`` / ``policy_sha256``, when given, must be what
    the verdict was reached with. Never raises for bad input: every refusal is a
    :class:`Verification` with its :class:`Problem` and reason."""
    try:
        return _verify(document, public_key, model, dataset_sha256, policy_sha256)
    except _Refused as e:
        return Verification(e.problem, e.reason)
    except Exception as e:  # fail closed on anything unforeseen
        log.debug("attestation check failed unexpectedly", exc_info=True)
        return Verification(Problem.MALFORMED, f"the document could not be checked: {type(e).__name__}: {e}")
