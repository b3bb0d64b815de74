"""The committed stubs in gate/_proto are exactly what proto/generate.py makes from proto/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import ROOT


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    committed = ROOT / "gate" / "_proto"
    # the sources and stubs, not bytecode Python may have compiled beside them
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.py*") if p.suffix in (".py", ".pyi")}
    current = {p.relative_to(committed): p.read_text() for p in committed.rglob("*.py*") if p.suffix in (".py", ".pyi")}
    assert set(fresh) == set(current), "run `make proto`"
    stale = [str(name) for name in fresh if fresh[name] != current[name]]
    assert not stale, f"stale generated stubs (run `make proto`): {stale}"
