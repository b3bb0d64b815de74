"""The reports of an evaluation with a champion, a training sample, known confidences and a
leakage rule: what people deciding whether to ship must be able to read in every format.

The verdict comes from a real `gate eval` run on real ONNX models (a challenger that
misses 40 more rabbits than the champion and recognises 5 more dogs, with confidences
spread over the calibration bins, and a training sample it knows by heart). A leakage rule
needs a fingerprint file of real images, so its result is added to the verdict's JSON
document, in the shape the rule writes, and the verdict is read back from it.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from gate.cli import main
from gate.report import render_html, render_json, render_junit, render_markdown, render_text
from gate.verdict import Verdict
from tests.models import one_hot_rows, table_model

CLASSES = ["cat", "dog", "rabbit"]
N = 600  # 200 held-out samples per class
MINUS = "\u2212"

POLICY = """\
version: 1
name: pets-evidence
rules:
  - {id: no-regression, type: baseline, metric: recall, per_class: true, max_drop: 0.05}
  - {id: no-worse, type: baseline, metric: accuracy, max_drop: 0.01, test: mcnemar, alpha: 0.05}
  - {id: no-overfit, type: train_test_gap, metric: accuracy, max_gap: 0.04}
  - {id: calibrated, type: metric, metric: ece, max: 0.5, severity: warn}
"""

# 14 near-duplicates: more than the text and Markdown reports list (10); one training
# path holds characters that are markup in Markdown and HTML
LEAKS = [
    {"sample": f"held/rabbit/{i:03d}.png", "train": f"train/rabbit/{i:03d}.jpg", "distance": i % 4} for i in range(13)
] + [{"sample": "held/cat/x.png", "train": "train/a|b/<img src=x>.png", "distance": 3}]
LEAKAGE_RESULT: dict[str, Any] = {
    "id": "no-leaks",
    "type": "leakage",
    "status": "fail",
    "severity": "block",
    "message": (
        "14 of 600 held-out images (2.33%) nearly duplicate training images (Hamming distance <= 4 between"
        " 64-bit perceptual hashes) > 0 allowed: the held-out set leaks training data; e.g."
        " held/rabbit/000.png ≈ train/rabbit/000.jpg (distance 0)"
    ),
    "observed": 14 / 600,
    "threshold": {"max_hamming": 4, "max_overlap": 0},
    "details": {"matches": 14, "rate": 14 / 600, "examples": LEAKS, "fingerprint_sha256": "f" * 64},
}


def _logits(predicted: list[int], seed: int) -> npt.NDArray[np.float32]:
    """Rows that predict ``predicted`` with confidences spread from about 0.4 to 1."""
    rows = one_hot_rows(predicted, len(CLASSES))
    strength = np.linspace(0.3, 8.0, len(predicted)).astype(np.float32)
    np.random.default_rng(seed).shuffle(strength)
    rows[np.arange(len(predicted)), predicted] = strength
    return rows


@dataclass(frozen=True)
class Run:
    doc: dict[str, Any]  # the verdict JSON `gate eval` wrote
    reports: Path  # its --report-dir
    root: Path


def _write_set(path: Path, first: int, labels: list[int]) -> None:
    n = len(labels)
    x = np.arange(first, first + n, dtype=np.float32).reshape(n, 1)
    np.savez(path, x=x, y=np.array(labels), classes=np.array(CLASSES))


def _eval(root: Path, model: Path, champion: Path, name: str) -> Run:
    out, reports = root / f"{name}.json", root / f"{name}-reports"
    argv = ["eval", "-q", "--provider", "cpu", "--no-cache", "--format", "json", "--output", str(out)]
    argv += ["--report-dir", str(reports), "--model", str(model), "--dataset", str(root / "pets.yaml")]
    argv += ["--policy", str(root / "policy.yaml"), "--baseline", str(champion)]
    assert main(argv) == 1
    return Run(json.loads(out.read_text(encoding="utf-8")), reports, root)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("evidence")
    labels = [c for c in range(3) for _ in range(N // 3)]
    champion = list(labels)
    for c in range(3):  # the champion misses 10 of each class
        for i in range(10):
            champion[c * 200 + i] = (c + 1) % 3
    challenger = list(champion)
    for i in range(410, 450):  # 40 more rabbits missed: rabbit recall 0.95 -> 0.75
        challenger[i] = 0
    for i in range(200, 205):  # 5 dogs the champion missed: dog recall 0.95 -> 0.975
        challenger[i] = 1
    # x < N is a held-out sample, x >= N a training one; the challenger knows every training sample
    train = one_hot_rows(labels, 3)
    (root / "challenger.onnx").write_bytes(table_model(np.concatenate([_logits(challenger, 1), train])))
    (root / "champion.onnx").write_bytes(table_model(np.concatenate([_logits(champion, 2), train])))
    _write_set(root / "held.npz", 0, labels)
    _write_set(root / "train.npz", N, labels)
    (root / "pets.yaml").write_text("name: pets\nsource: held.npz\ntrain_sample: train.npz\n")
    (root / "policy.yaml").write_text(POLICY)
    return _eval(root, root / "challenger.onnx", root / "champion.onnx", "run")


def _with_leakage(doc: dict[str, Any]) -> Verdict:
    d = copy.deepcopy(doc)
    d["rules"].append(copy.deepcopy(LEAKAGE_RESULT))
    return Verdict.from_dict(d)


@pytest.fixture(scope="module")
def verdict(run: Run) -> Verdict:
    return _with_leakage(run.doc)


def _signed(x: float) -> str:
    text = f"{abs(x):.3f}"
    return text if float(text) == 0 else ("+" if x > 0 else MINUS) + text


def _interval(doc: dict[str, Any]) -> str:
    diff = doc["baseline"]["comparison"]["accuracy_difference"]
    return (
        f"accuracy difference {MINUS}0.058, 95% interval [{_signed(diff['low'])}, {_signed(diff['high'])}],"
        " paired bootstrap, 10,000 resamples, seed 0"
    )


def _mcnemar_p() -> float:
    # exact two-sided McNemar p of 40 samples lost and 5 won
    return 2 * sum(math.comb(45, i) for i in range(6)) / 2**45


def test_the_run_has_all_the_evidence(run: Run) -> None:
    doc = run.doc
    assert doc["verdict"] == "FAIL"
    assert doc["metrics"]["accuracy"] == pytest.approx(535 / 600)
    assert doc["metrics"]["ece"] is not None and len(doc["metrics"]["calibration"]["bins"]) == 15
    assert sum(b["count"] > 0 for b in doc["metrics"]["calibration"]["bins"]) >= 8  # spread over the bins
    assert doc["baseline"]["metrics"]["calibration"]["bins"]
    comparison = doc["baseline"]["comparison"]
    assert comparison["mcnemar"] == {
        "challenger_worse": 40,
        "challenger_better": 5,
        "p_value": pytest.approx(_mcnemar_p()),
    }
    diff = comparison["accuracy_difference"]
    assert diff["difference"] == pytest.approx(-35 / 600)
    assert (diff["confidence"], diff["resamples"], diff["seed"]) == (0.95, 10_000, 0)
    assert diff["low"] < diff["difference"] < diff["high"] < 0
    assert doc["train_sample"]["metrics"]["accuracy"] == 1.0
    statuses = {r["id"]: r["status"] for r in doc["rules"]}
    assert statuses == {"no-regression": "fail", "no-worse": "fail", "no-overfit": "fail", "calibrated": "pass"}


# --- text ----------------------------------------------------------------------------------------


def _section(text: str, title: str, end: str) -> str:
    return text.split(f"\n{title}\n", 1)[1].split(f"\n{end}", 1)[0]


def test_text_compares_champion_and_challenger(run: Run, verdict: Verdict) -> None:
    text = render_text(verdict)
    section = _section(text, "Champion vs challenger", "Training sample\n")
    sha = run.doc["baseline"]["model"]["sha256"]
    assert f"champion  {run.root / 'champion.onnx'}  (sha256 {sha[:12]}, " in section
    rows = {line.split()[0]: line.split()[1:] for line in section.splitlines() if line.startswith("  ")}
    assert rows["accuracy"] == ["0.950", "0.892", f"{MINUS}0.058", "✗"]  # the no-worse rule failed
    assert rows["macro"][:1] == ["F1"]
    assert rows["cat"] == ["0.950", "0.950", "0.000"]
    assert rows["dog"] == ["0.950", "0.975", "+0.025"]
    assert rows["rabbit"] == ["0.950", "0.750", f"{MINUS}0.200", "✗"]
    ece = run.doc["metrics"]["ece"] - run.doc["baseline"]["metrics"]["ece"]
    assert re.search(
        rf"^  ECE \(lower is better\) +\d\.\d{{3}} +\d\.\d{{3}} +{re.escape(_signed(ece))}$", section, re.M
    )
    assert f"  challenger minus champion: {_interval(run.doc)}\n" in section
    assert "The whole interval lies below zero: the challenger is less accurate than the champion." in section
    assert re.search(r"^ +champion right +530 +40$", section, re.M)
    assert re.search(r"^ +champion wrong +5 +25$", section, re.M)
    words = " ".join(section.split())
    assert "the challenger is wrong on 40 the champion gets right and right on 5 the champion gets wrong" in words
    assert f"Two-sided p = {_mcnemar_p():.3g}:" in words
    assert "the challenger is significantly worse than the champion at the 5% level" in words


def test_text_shows_ece_the_training_sample_and_the_leaks(verdict: Verdict) -> None:
    text = render_text(verdict)
    metrics = _section(text, "Metrics", "Per class")
    assert re.search(r"^  ece +0\.\d{3}$", metrics, re.M)
    train = _section(text, "Training sample", "Rules")
    assert "  pets (training sample): 600 samples, sha256 " in train
    assert re.search(r"^  accuracy +1\.000 +0\.892 +\+0\.108  ✗$", train, re.M)
    rules = text.split("\nRules\n", 1)[1]
    leak_block = rules.split("no-leaks", 1)[1]
    assert "14 held-out samples nearly duplicate training images (2.33% of the set); the 10 closest:" in leak_block
    listed = re.findall(r"^ +(held/\S+) ≈ (\S+) \(Hamming distance (\d)\)$", leak_block, re.M)
    assert listed == [(e["sample"], e["train"], str(e["distance"])) for e in LEAKS[:10]]
    assert "… and 4 more, listed in the verdict JSON" in leak_block
    assert "held/rabbit/010.png" not in text
    assert text.rstrip().splitlines()[-1].startswith("VERDICT: FAIL: 4 blocking rules failed")


def test_text_without_that_evidence_has_no_such_sections(run: Run) -> None:
    doc = copy.deepcopy(run.doc)
    for key in ("baseline", "train_sample"):
        del doc[key]
    doc["metrics"]["ece"] = None
    del doc["metrics"]["calibration"]
    text = render_text(Verdict.from_dict(doc))
    for absent in ("Champion vs challenger", "Training sample", "near-duplicate"):
        assert absent not in text
    assert not re.search(r"^  ece ", _section(text, "Metrics", "Per class"), re.M)


# --- markdown ------------------------------------------------------------------------------------


def _tables(text: str) -> list[list[list[str]]]:
    """Every GFM table: a list of rows of cells (split on unescaped pipes)."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            tables.append([[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in block])
            block = []
    return tables


def test_markdown_tables_are_well_formed(verdict: Verdict) -> None:
    text = render_markdown(verdict)
    tables = _tables(text)
    assert len(tables) >= 8
    for table in tables:
        width = len(table[0])
        assert all(len(row) == width for row in table), table
        assert all(re.fullmatch(r"-{3}:?", cell) for cell in table[1]), table[1]
    # each table starts after a blank line, or GFM does not see it
    heads = list(re.finditer(r"^\|.*\n\|( -{3}:? \|)+$", text, re.M))
    assert len(heads) == len(tables)
    for match in heads:
        assert text[: match.start()].endswith("\n\n")


def _table_after(text: str, heading: str) -> list[list[str]]:
    return _tables(text.split(heading, 1)[1])[0]


def test_markdown_compares_champion_and_challenger(run: Run, verdict: Verdict) -> None:
    text = render_markdown(verdict)
    section = text.split("### Champion vs challenger\n", 1)[1].split("\n### ", 1)[0]
    sha = run.doc["baseline"]["model"]["sha256"][:12]
    assert f"The champion, `{run.root / 'champion.onnx'}` (sha256 `{sha}`), ran on the same samples" in section
    headline, classes, mcnemar = _tables(section)
    assert headline[0] == ["metric", "champion", "challenger", "difference"]
    assert headline[2] == ["accuracy", "0.950", "0.892", f"{MINUS}0.058 ❌"]
    assert [r[0] for r in headline[2:]] == ["accuracy", "balanced accuracy", "macro F1", "ECE (lower is better)"]
    assert classes[0] == ["class", "champion recall", "challenger recall", "change"]
    assert classes[2:] == [
        ["`cat`", "0.950", "0.950", "0.000"],
        ["`dog`", "0.950", "0.975", "+0.025"],
        ["`rabbit`", "0.950", "0.750", f"{MINUS}0.200 ❌"],
    ]
    assert f"Challenger minus champion: {_interval(run.doc)}. The whole interval lies below zero" in section
    assert mcnemar[2:] == [["champion right", "530", "**40**"], ["champion wrong", "**5**", "25"]]
    assert f"Two-sided p = {_mcnemar_p():.3g}: a split this uneven would almost never happen by chance" in section


def test_markdown_shows_ece_the_training_sample_and_the_leaks(run: Run, verdict: Verdict) -> None:
    text = render_markdown(verdict)
    assert f"- ECE **{run.doc['metrics']['ece']:.3f}** (expected calibration error; lower is better)" in text
    train = _table_after(text, "### Training sample\n")
    assert train[2] == ["accuracy", "1.000", "0.892", "+0.108 ❌"]
    assert "**pets (training sample)**, 600 samples" in text
    leaks = text.split("#### Near-duplicates found by `no-leaks`\n", 1)[1]
    assert leaks.lstrip().startswith("14 held-out samples nearly duplicate training images (2.33% of the set)")
    table = _tables(leaks)[0]
    assert table[0] == ["held-out sample", "training image", "Hamming distance"]
    assert table[2:] == [[f"`{e['sample']}`", f"`{e['train']}`", str(e["distance"])] for e in LEAKS[:10]]
    assert "… and 4 more, listed in the verdict JSON" in leaks
    # the leak section sits with the rules, before the metrics
    assert text.index("#### Near-duplicates") < text.index("### Metrics")


def test_markdown_escapes_a_leaked_path(run: Run) -> None:
    doc = copy.deepcopy(run.doc)
    rule = copy.deepcopy(LEAKAGE_RESULT)
    rule["details"]["examples"] = LEAKS[-1:]
    doc["rules"].append(rule)
    text = render_markdown(Verdict.from_dict(doc))
    assert "| `held/cat/x.png` | `train/a\\|b/<img src=x>.png` | 3 |" in text  # a code span: no tag, one cell


def test_the_cli_writes_the_same_reports(run: Run) -> None:
    verdict = Verdict.from_dict(run.doc)
    assert (run.reports / "report.md").read_text(encoding="utf-8") == render_markdown(verdict)
    assert (run.reports / "junit.xml").read_text(encoding="utf-8") == render_junit(verdict)
    assert (run.reports / "report.html").read_text(encoding="utf-8") == render_html(verdict)
    assert json.loads((run.reports / "verdict.json").read_text(encoding="utf-8")) == run.doc


@pytest.mark.parametrize("render", [render_text, render_markdown, render_junit, render_html])
def test_reports_render_the_same_from_the_verdict_json(verdict: Verdict, render: Any) -> None:
    again = Verdict.from_dict(json.loads(render_json(verdict)))
    assert render(again) == render(verdict)


# --- html ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(verdict: Verdict) -> str:
    return render_html(verdict)


def _image(page: str, alt: str) -> Image.Image | None:
    found = re.findall(rf'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="{re.escape(alt)}">', page)
    if not found:
        return None
    assert len(found) == 1
    data = base64.b64decode(found[0])
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    return Image.open(io.BytesIO(data)).convert("RGB")


def _pixels(
    image: Image.Image, rgb: tuple[int, int, int], box: tuple[float, float, float, float] = (0, 0, 1, 1)
) -> int:
    """Pixels of about colour ``rgb`` within ``box`` (left, top, right, bottom as shares of the image)."""
    a = np.asarray(image, dtype=np.int16)
    h, w = a.shape[:2]
    left, top, right, bottom = box
    a = a[int(top * h) : int(bottom * h), int(left * w) : int(right * w)]
    return int((np.abs(a - np.array(rgb, dtype=np.int16)).max(axis=2) <= 12).sum())


BLUE, ORANGE = (0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18)


def test_html_draws_a_reliability_diagram_with_the_champion(page: str) -> None:
    image = _image(page, "reliability diagram")
    assert image is not None
    assert image.width >= 600 and image.height >= 500
    assert _pixels(image, BLUE) > 20_000  # the accuracy bars
    # the champion's curve runs over the upper panel, right of the legend (confidences from 0.4 up)
    assert _pixels(image, ORANGE, box=(0.45, 0, 1, 0.65)) > 200
    assert "<h2>Calibration</h2>" in page
    assert "The orange line is the champion's accuracy per bin." in page


def test_html_reliability_diagram_without_a_champion_and_without_confidences(run: Run) -> None:
    doc = copy.deepcopy(run.doc)
    del doc["baseline"]
    image = _image(render_html(Verdict.from_dict(doc)), "reliability diagram")
    assert image is not None and _pixels(image, BLUE) > 20_000
    assert _pixels(image, ORANGE) == 0
    doc["metrics"]["ece"] = None
    del doc["metrics"]["calibration"]
    page = render_html(Verdict.from_dict(doc))
    assert _image(page, "reliability diagram") is None and "<h2>Calibration</h2>" not in page
    assert "ECE" not in page


def test_html_compares_champion_and_challenger(run: Run, page: str) -> None:
    section = page.split("<h2>Champion vs challenger</h2>", 1)[1].split("<h2>", 1)[0]
    assert f"<code>{run.root / 'champion.onnx'}</code>" in section
    assert (
        '<tr><td>accuracy</td><td class="num">0.950</td><td class="num">0.892</td>'
        f'<td class="num worse">{MINUS}0.058 <span class="badge fail">fails a block rule</span></td></tr>'
    ) in section
    assert (
        '<tr><td><code>dog</code></td><td class="num">0.950</td><td class="num">0.975</td>'
        '<td class="num better">+0.025</td></tr>'
    ) in section
    assert f'<td class="num worse">{MINUS}0.200 <span class="badge fail">' in section
    assert '<td class="num">0.000</td></tr>' in section  # cat: unchanged
    assert f"<strong>{_interval(run.doc)}</strong>" in section
    assert '<th>champion right</th><td class="num">530</td><td class="num worse">40</td>' in section
    assert '<th>champion wrong</th><td class="num better">5</td><td class="num">25</td>' in section
    assert "significantly worse than the champion at the 5% level" in section
    assert "<th>champion</th>" in page.split("<h2>Identities</h2>", 1)[1].split("</table>", 1)[0]


def test_html_shows_ece_the_training_sample_and_every_leak_escaped(run: Run, page: str) -> None:
    ece = f"{run.doc['metrics']['ece']:.3f}"
    assert f'<div class="value">{ece}</div><div class="label">ECE (calibration error)</div>' in page
    train = page.split("<h2>Training sample</h2>", 1)[1].split("<h2>", 1)[0]
    assert '<td class="num worse">+0.108 <span class="badge fail">fails a block rule</span>' in train
    leaks = page.split("<h2>Near-duplicates found by <code>no-leaks</code></h2>", 1)[1].split("<h2>", 1)[0]
    assert leaks.count("<tr><td><code>held/") == len(LEAKS)
    assert "<code>train/a|b/&lt;img src=x&gt;.png</code>" in leaks and "<img src=x>" not in page
    assert "f" * 64 in leaks  # the fingerprint file it compared against


# --- junit ---------------------------------------------------------------------------------------


def test_junit_fails_each_regressed_class_and_lists_the_leaks(run: Run, verdict: Verdict) -> None:
    root = ET.fromstring(render_junit(verdict).encode("utf-8"))
    (suite,) = root.findall("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {
        "no-regression[cat]",
        "no-regression[dog]",
        "no-regression[rabbit]",
        "no-worse",
        "no-overfit",
        "calibrated",
        "no-leaks",
    }
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"no-regression[rabbit]", "no-worse", "no-overfit", "no-leaks"}
    assert suite.get("failures") == "4" and suite.get("skipped") == "1"
    rabbit = cases["no-regression[rabbit]"].find("failure")
    assert rabbit is not None and rabbit.get("message") == "rabbit: recall 0.750 vs champion 0.950: drop 0.200 > 0.050"
    assert cases["no-regression[rabbit]"].get("classname") == "gate.pets-evidence.baseline"
    leak = cases["no-leaks"].find("failure")
    assert leak is not None and leak.text is not None
    listed = re.findall(r"^  (\S+) ≈ (.+) \(Hamming distance (\d)\)$", leak.text, re.M)
    assert listed == [(e["sample"], e["train"], str(e["distance"])) for e in LEAKS]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["baseline.model.sha256"] == run.doc["baseline"]["model"]["sha256"]
    assert props["train_sample.sha256"] == run.doc["train_sample"]["sha256"]


# --- a champion against itself -------------------------------------------------------------------


def test_a_champion_against_itself_reads_as_no_difference(run: Run) -> None:
    champion = run.root / "champion.onnx"
    same = _eval(run.root, champion, champion, "same")  # still FAIL: the training sample gap (0.05 > 0.04)
    text = render_text(Verdict.from_dict(same.doc))
    section = _section(text, "Champion vs challenger", "Training sample\n")
    assert "accuracy difference 0.000, 95% interval [0.000, 0.000], paired bootstrap" in section
    assert "The interval includes zero: no clear difference in accuracy." in section
    assert "right and wrong on exactly the same samples, so nothing tells them apart (p = 1)" in " ".join(
        section.split()
    )
    assert re.search(r"^ +champion right +570 +0$", section, re.M)
    assert re.search(r"^  rabbit +0\.950 +0\.950 +0\.000$", section, re.M)
