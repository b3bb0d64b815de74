"""The command line's package: names it spells out to stay light equal the ones it
stands in for, and commands that never run a model do not load ONNX Runtime."""

from __future__ import annotations

from gate.cli.auth import token_sha256
from gate.cli.verdict_output import REPORT_FORMATS
from gate.report import RENDERERS
from gate.server.auth import token_sha256 as server_token_sha256


def test_report_formats_are_the_renderers() -> None:
    assert list(REPORT_FORMATS) == sorted(RENDERERS)


def test_token_hash_is_the_servers() -> None:
    for token in ("", "abc", "Ünïcode token ✓", "x" * 1000):
        assert token_sha256(token) == server_token_sha256(token)
