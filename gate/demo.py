"""The demo: a real imbalanced held-out set, a good and a bad real model, gated over gRPC.

Built from scikit-learn's bundled 8×8 digits (nothing is downloaded). The held-out set
is imbalanced like production: 100 images of each digit except the rare class
``three``, with 30. Two multinomial logistic regressions are trained on the rest:

* **good**: trained on the whole training split;
* **bad**: the same, but the rare class was starved in training (3 examples), so its
  accuracy stays high while its recall on ``three`` collapses.

Needs the ``demo`` extra (scikit-learn and onnx) to build; the server itself does not.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
RARE_CLASS = "three"
HELDOUT_PER_CLASS = 100
HELDOUT_RARE = 30
STARVED_RARE = 3
SEED = 0
PIXEL_STEP = 15  # PNG pixel = 15 x the 0..16 digit value: exact in 8 bits

SPEC = """\
name: digits-heldout
description: >-
  scikit-learn digits as 8x8 greyscale PNGs, held out from training; imbalanced like
  production: 100 per digit, {rare_n} for the rare class '{rare}'
source: heldout
classes: [{classes}]
preprocess:
  scale: {step}        # PNG pixels are {step} x the 0..16 digit values
  channels: L
  layout: NCHW
"""


def _require_demo_extra() -> None:
    try:
        import onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"the demo needs scikit-learn and onnx ({e.name} is missing): pip install 'gate[demo]'") from e


def linear_softmax_onnx(
    weights: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    *,
    input_shape: Sequence[int | str],
    classes: Sequence[str] | None = None,
) -> bytes:
    """softmax(flatten(x) @ W + b) as an ONNX model: a multinomial logistic regression."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = weights.shape[1]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["z"]),
            helper.make_node("Add", ["z", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "linear-softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [input_shape[0], k])],
        [
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32).reshape(1, -1), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # readable by every onnxruntime >= 1.16
    if classes is not None:
        helper.set_model_props(model, {"classes": json.dumps(list(classes))})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@dataclass
class DigitsSplit:
    x_train: npt.NDArray[np.float32]  # (N, 1, 8, 8), values 0..16
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]


def load_split(*, per_class: int = HELDOUT_PER_CLASS, rare: int = HELDOUT_RARE) -> DigitsSplit:
    """A seeded split of the digits: ``per_class`` held-out images per digit, ``rare``
    for the rare class; the rest for training."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.images.astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    held: list[int] = []
    train: list[int] = []
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = rare if CLASSES[c] == RARE_CLASS else per_class
        held += idx[:n].tolist()
        train += idx[n:].tolist()
    return DigitsSplit(x[train], y[train], x[held], y[held])


def train(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> bytes:
    """A logistic regression on x / 16, exported with the 1/16 folded into its weights so
    that it takes raw 0..16 pixel values."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=5000, random_state=SEED)
    clf.fit(x.reshape(len(x), -1) / 16.0, y)
    weights = clf.coef_.T.astype(np.float32) / np.float32(16)
    return linear_softmax_onnx(weights, clf.intercept_.astype(np.float32), input_shape=["N", 1, 8, 8], classes=CLASSES)


def write_imagefolder(root: Path, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> Path:
    """Write samples as ``root/heldout/<class>/<index>.png`` and the spec ``root/heldout.yaml``."""
    from PIL import Image

    folder = root / "heldout"
    shutil.rmtree(folder, ignore_errors=True)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        pixels = (img[0] * PIXEL_STEP).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / CLASSES[int(label)] / f"{i:04d}.png")
    spec = root / "heldout.yaml"
    classes = ", ".join(f'"{c}"' for c in CLASSES)
    rare_n = int((y == CLASSES.index(RARE_CLASS)).sum())
    spec.write_text(SPEC.format(classes=classes, step=PIXEL_STEP, rare=RARE_CLASS, rare_n=rare_n), encoding="utf-8")
    return spec


@dataclass(frozen=True)
class DemoFiles:
    heldout_spec: Path
    good_model: Path
    bad_model: Path


def build(root: Path) -> DemoFiles:
    """Write the held-out set and both models under ``root`` (deterministic; rebuilt each time)."""
    _require_demo_extra()
    root.mkdir(parents=True, exist_ok=True)
    split = load_split()
    spec = write_imagefolder(root, split.x_test, split.y_test)
    rare = CLASSES.index(RARE_CLASS)
    keep = np.flatnonzero(split.y_train != rare)
    starved = np.concatenate([keep, np.flatnonzero(split.y_train == rare)[:STARVED_RARE]])
    good, bad = root / "good.onnx", root / "bad.onnx"
    good.write_bytes(train(split.x_train, split.y_train))
    bad.write_bytes(train(split.x_train[starved], split.y_train[starved]))
    return DemoFiles(spec, good, bad)


def ensure_heldout(root: Path) -> Path:
    """The demo held-out spec under ``root``, built first if it is not there."""
    spec = root / "heldout.yaml"
    if not spec.is_file():
        build(root)
    return spec


def run(data_dir: Path, *, out: TextIO | None = None) -> int:
    """The main job: build, serve on the embedded defaults, gate both models over gRPC.

    Returns 0 when the good model passes and the bad one fails, as they should.
    """
    from gate.client import GateClient
    from gate.config import load_config
    from gate.report import render_text
    from gate.server import create_server
    from gate.verdict import Verdict

    stream = out or sys.stdout
    say = functools.partial(print, file=stream, flush=True)
    started = time.perf_counter()
    files = build(data_dir / "demo")
    say(
        f"built the demo under {data_dir / 'demo'}: an imbalanced held-out set of digits (rare class"
        f" '{RARE_CLASS}') and two models trained on the rest"
    )
    config = load_config(None, listen="127.0.0.1:0", data_dir=str(data_dir))
    server, port = create_server(config)
    decisions = []
    try:
        say(f"gate server on the embedded defaults at 127.0.0.1:{port}")
        with GateClient(f"127.0.0.1:{port}", timeout=600) as client:
            for label, path, story in (
                ("good", files.good_model, "trained on the whole training split"),
                ("bad", files.bad_model, f"'{RARE_CLASS}' starved in training ({STARVED_RARE} examples)"),
            ):
                ref = client.upload_model(path.read_bytes(), filename=path.name)
                say(f"\n=== {path.name}: {story}; uploaded as {ref.sha256[:12]}, gated by policy 'default'")
                evaluation = client.evaluate(
                    ref.sha256,
                    "digits-heldout",
                    policy_name="default",
                    model_name=str(path),
                    labels={"pipeline_id": "demo", "extra": {"model": label}},
                )
                verdict = Verdict.from_dict(evaluation.document)
                decisions.append(verdict.decision.value)
                say(render_text(verdict), end="")
    finally:
        server.stop()
    say(f"\naudit database: {config.audit_db} (list it with: gate history --data-dir {data_dir})")
    ok = decisions == ["PASS", "FAIL"]
    say(
        f"demo {'as expected' if ok else 'NOT as expected'}: good model {decisions[0] if decisions else '-'},"
        f" bad model {decisions[1] if len(decisions) > 1 else '-'} ({time.perf_counter() - started:.1f} s)"
    )
    return 0 if ok else 1
