"""How the commands that talk to a gate server (``check``, ``health``, ``history
--server``) connect: their TLS, token and message-size options, and the client built
from them. The bearer token is read here and nowhere deeper: ``--token-file``, else
``$GATE_TOKEN``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.errors import RequestError

if TYPE_CHECKING:
    from gate.client import GateClient

# the options that pass to GateClient under their own names
_TLS_OPTIONS = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "load_balancing")


def add_client_options(p: argparse.ArgumentParser) -> None:
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


def bearer_token(args: argparse.Namespace) -> str | None:
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


def open_client(args: argparse.Namespace, server: str, timeout: float) -> GateClient:
    """A client for ``server`` with the command's connection options."""
    from gate.client import GateClient
    from gate.config import DEFAULT_MAX_MESSAGE_BYTES

    options: dict[str, Any] = {name: getattr(args, name) for name in _TLS_OPTIONS}
    return GateClient(
        server,
        timeout=timeout,
        token=bearer_token(args),
        max_message_bytes=args.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES,
        **options,
    )
