"""`gate demo`, the README's main job: PASS for the good model, then FAIL naming the rare
class and its recall, over a real gRPC server, recorded in the audit database."""

from __future__ import annotations

import io
from pathlib import Path

from gate import demo
from gate.store import AuditStore


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    assert demo.run(tmp_path, out=out) == 0
    text = out.getvalue()
    verdict_lines = [line for line in text.splitlines() if line.startswith("VERDICT: ")]
    assert verdict_lines == [
        "VERDICT: PASS: all 6 blocking rules passed",
        "VERDICT: FAIL: 2 blocking rules failed: recall-floor, imbalance-guard",
    ]
    assert "  ✗ FAIL  recall-floor       three: recall 0.167 < 0.800 (5/30)" in text
    assert f"audit database: {tmp_path / 'audit.sqlite3'}" in text
    with AuditStore(tmp_path / "audit.sqlite3") as store:
        records = store.list()
    assert [r.decision for r in records] == ["FAIL", "PASS"]  # newest first
    assert all(r.labels["pipeline_id"] == "demo" for r in records)


def test_demo_set_is_imbalanced_with_one_rare_class(tmp_path: Path) -> None:
    from gate.datasets import load_dataset

    files = demo.build(tmp_path)
    ds = load_dataset(files.heldout_spec)
    support = {c: int((ds.labels == i).sum()) for i, c in enumerate(ds.classes)}
    assert support.pop(demo.RARE_CLASS) == demo.HELDOUT_RARE
    assert set(support.values()) == {demo.HELDOUT_PER_CLASS}
    again = demo.build(tmp_path / "again")
    assert load_dataset(again.heldout_spec).sha256 == ds.sha256  # deterministic
    assert again.good_model.read_bytes() == files.good_model.read_bytes()
