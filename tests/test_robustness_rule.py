"""The ``robustness`` rule end to end: real ONNX models on a real image set, corrupted by
gate, judged, through `gate eval`'s evaluation and through `gate check` on a real server.

The set: four classes of flat grey images whose intensities are 20, 90, 170 and 185, so
``light`` and ``lighter`` are 15 grey levels apart. The *patch* model averages four pixels
and answers the class of the nearest intensity: right on every clean image, but Gaussian
noise of severity 3 (σ = 0.18, 46 grey levels per pixel, 23 on four) pushes the patch
across the 7.5 levels to the boundary about 37 % of the time, while the other classes
are 35 levels or more from theirs. The *mean* model averages the whole image, which
averages the noise away (σ of the mean below one level): a large margin for the same set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from gate.cli import main
from gate.evaluation import evaluate
from gate.verdict import Decision
from tests.conftest import Served

# in the order an ImageFolder lists its class folders (by name)
CLASSES = ["dark", "light", "lighter", "mid"]
LEVELS = [20, 170, 185, 90]
PATCH = 4  # pixels the fragile model averages
SIDE = 32
PER_CLASS = 40
RULE = {
    "id": "robust",
    "type": "robustness",
    "corruptions": ["gaussian_noise"],
    "severities": [3],
    "metric": "recall",
    "per_class": True,
    "min": 0.7,
    "seed": 0,
}


def write_image_set(root: Path) -> Path:
    """The four-class grey set as an ImageFolder with a spec; returns the spec."""
    for name, level in zip(CLASSES, LEVELS, strict=True):
        folder = root / "grey" / name
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            pixels = np.full((SIDE, SIDE, 3), level, dtype=np.uint8)
            pixels[0, 0, 1] = level + i  # a corner pixel apart, so that no two files are the same
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    spec = root / "datasets" / "grey.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text("name: grey\nsource: ../grey\n")
    return spec


def intensity_model(*, whole_image: bool) -> bytes:
    """Scores -(v - level)² for each class, v the mean of four red values of the centre row
    (0..1) or the image's mean."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", len(CLASSES)])
    centre = (SIDE // 2) * SIDE + SIDE // 2
    inits = [
        numpy_helper.from_array(np.array(LEVELS, dtype=np.float32).reshape(1, -1) / 255.0, "levels"),
        numpy_helper.from_array(np.array([centre], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([centre + PATCH], dtype=np.int64), "stop"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
        numpy_helper.from_array(np.array([100.0], dtype=np.float32), "sharp"),
    ]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1)]
    if whole_image:
        nodes.append(helper.make_node("ReduceMean", ["flat"], ["v"], axes=[1], keepdims=1))
    else:
        nodes.append(helper.make_node("Slice", ["flat", "start", "stop", "axis"], ["patch"]))
        nodes.append(helper.make_node("ReduceMean", ["patch"], ["v"], axes=[1], keepdims=1))
    nodes += [
        helper.make_node("Sub", ["v", "levels"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Mul", ["d2", "sharp"], ["d2s"]),
        helper.make_node("Neg", ["d2s"], ["scores"]),
    ]
    graph = helper.make_graph(nodes, "intensity", [x], [scores], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_policy(path: Path, **changes: Any) -> Path:
    rule = {**RULE, **changes}
    path.write_text(yaml.safe_dump({"version": 1, "name": "robust", "rules": [rule]}))
    return path


@pytest.fixture
def grey(tmp_path: Path) -> Path:
    return write_image_set(tmp_path)


def test_a_small_margin_fails_on_noise_and_a_large_margin_passes(grey: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    fragile = evaluate(intensity_model(whole_image=False), grey, policy, provider="cpu")
    assert fragile.decision is Decision.FAIL, fragile.error
    assert fragile.metrics["accuracy"] == 1.0  # right on every clean image
    message = fragile.rules[0].message
    assert message == (
        "gaussian_noise@3, light: recall 0.650 (26/40) < 0.700 (clean 1.000);"
        " gaussian_noise@3, lighter: recall 0.525 (21/40) < 0.700 (clean 1.000)"
    )
    assert "dark" not in message and "mid" not in message  # far from any other class
    cell = fragile.metrics["robustness"]["gaussian_noise"]["3"]
    assert cell["recall"]["lighter"] < 0.7 and cell["recall"]["dark"] == 1.0
    sturdy = evaluate(intensity_model(whole_image=True), grey, policy, provider="cpu")
    assert sturdy.decision is Decision.PASS, (sturdy.error, [r.message for r in sturdy.rules])
    assert sturdy.metrics["robustness"]["gaussian_noise"]["3"]["accuracy"] == 1.0


def test_the_same_seed_gives_the_same_verdict_and_another_seed_other_pixels(grey: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml")
    model = intensity_model(whole_image=False)
    first, second = (evaluate(model, grey, policy, provider="cpu") for _ in range(2))
    assert first.rules[0].to_dict() == second.rules[0].to_dict()
    assert first.metrics["robustness"] == second.metrics["robustness"]
    other = evaluate(model, grey, write_policy(tmp_path / "q.yaml", seed=1), provider="cpu")
    assert other.metrics["robustness"] != first.metrics["robustness"]


def test_same_model_as_champion_gives_relative_mce_of_exactly_one(grey: Path, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path / "p.yaml",
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 3],
        relative_to_baseline=1.0,
        min=0.0,  # only the comparison with the champion is judged
    )
    model = intensity_model(whole_image=False)
    verdict = evaluate(model, grey, policy, provider="cpu", baseline=model)
    summary = verdict.metrics["robustness_summary"]
    assert summary["mce"] == 1.0 and summary["relative_mce"] == 1.0
    assert verdict.decision is Decision.PASS, verdict.rules[0].message
    assert "mCE 1.000 <= 1 × the champion's" in verdict.rules[0].message
    assert verdict.rules[0].details["mce"] == 1.0


def test_a_set_of_tensors_is_an_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=np.zeros((4, 3, 8, 8), np.float32), y=np.arange(4), classes=np.array(CLASSES))
    verdict = evaluate(intensity_model(whole_image=True), tmp_path / "t.npz", write_policy(tmp_path / "p.yaml"))
    assert verdict.decision is Decision.ERROR
    assert "robustness needs image samples" in verdict.error["message"]


def test_gate_check_gives_the_verdict_gate_eval_gives(
    grey: Path, tmp_path: Path, serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve(datasets=["datasets", str(grey.parent)])
    model = tmp_path / "pixel.onnx"
    model.write_bytes(intensity_model(whole_image=False))
    policy = write_policy(tmp_path / "p.yaml")
    common = ["--model", str(model), "--provider", "cpu", "--format", "json"]
    code = main(["check", "--server", s.address, "--dataset", "grey", "--policy-file", str(policy), *common])
    checked = json.loads(capsys.readouterr().out)
    assert code == 1, checked.get("error")
    code_eval = main(["eval", "--dataset", str(grey), "--policy", str(policy), *common])
    evaluated = json.loads(capsys.readouterr().out)
    assert code == code_eval == 1
    assert checked["rules"] == evaluated["rules"]
    assert checked["metrics"]["robustness"] == evaluated["metrics"]["robustness"]


def test_reports_show_the_cells_and_the_failing_pictures(grey: Path, tmp_path: Path) -> None:
    from gate.report import RENDERERS

    verdict = evaluate(intensity_model(whole_image=False), grey, write_policy(tmp_path / "p.yaml"), provider="cpu")
    cell = verdict.rules[0].details["cells"]["gaussian_noise"]["3"]
    assert cell["failed"] and cell["failing"] == ["light", "lighter"] and len(cell["examples"]) == 3
    html = RENDERERS["html"](verdict)
    assert "gaussian_noise@3: clean | corrupted" in html
    assert html.count('alt="clean ') == 3 and html.count('alt="gaussian_noise ') == 3
    assert "pictures unavailable" not in html
    text = RENDERERS["text"](verdict)
    assert "Robustness (accuracy on corrupted images)" in text and "gaussian_noise" in text
    assert "| gaussian_noise |" in RENDERERS["markdown"](verdict)
    # rendered where the images are gone: the page says so instead of breaking
    for png in grey.parent.parent.rglob("*.png"):
        png.unlink()
    assert "pictures unavailable here (FileNotFoundError" in RENDERERS["html"](verdict)


def test_a_drop_from_an_undefined_clean_value_fails(grey: Path, tmp_path: Path) -> None:
    """A class the set has no image of: the model never answers it on clean images (its clean
    precision is undefined) but does under noise. ``max_drop`` alone cannot measure a drop
    from nothing, so the cell fails rather than passing unjudged."""
    rows = ["path,label"] + [
        f"{name}/{png.name},{name}"
        for name in CLASSES
        if name != "lighter"
        for png in sorted((grey.parent.parent / "grey" / name).iterdir())
    ]
    (grey.parent.parent / "grey" / "list.csv").write_text("\n".join(rows) + "\n")
    grey.write_text(f"name: grey\nsource: ../grey/list.csv\nclasses: [{', '.join(CLASSES)}]\n")
    policy = write_policy(tmp_path / "p.yaml", metric="precision", min=None, max_drop=0.5)
    verdict = evaluate(intensity_model(whole_image=False), grey, policy, provider="cpu")
    assert verdict.decision is Decision.FAIL, (verdict.error, [r.message for r in verdict.rules])
    assert (
        verdict.rules[0].message == "gaussian_noise@3, lighter: precision 0.000 (0/11) drop undefined (clean undefined)"
    )
    # the pictures of the failing cell are images wrongly answered as the class
    examples = verdict.rules[0].details["cells"]["gaussian_noise"]["3"]["examples"]
    assert len(examples) == 3 and all(sid.startswith("light/") for sid in examples), examples
