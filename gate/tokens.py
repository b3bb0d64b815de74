"""Bearer tokens as the server's ``tokens:`` configuration stores them: by SHA-256 only.

Dependency-free, so that ``gate token`` hashes exactly as the server checks without
importing the server (gRPC, ONNX Runtime).
"""

from __future__ import annotations

import hashlib


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token's text: what the configuration stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
