"""A real classifier for tests and the demo: multinomial logistic regression trained on
scikit-learn's bundled 8×8 digits, exported as ONNX, and its held-out split written as an
ImageFolder of greyscale PNGs.

Pixels in the digits arrays are integers 0..16. The PNGs store 15 times that (0..240,
exact in 8 bits), so the dataset spec's ``scale: 15`` restores the arrays exactly; the
exported model folds the ``x / 16`` it was trained on into its weights, so it takes the
raw 0..16 values whether they come from the PNGs or from the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from tests.models import linear_softmax_model

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PIXEL_STEP = 15

SPEC = """\
name: digits-heldout
description: scikit-learn digits, 30% held out, as 8x8 greyscale PNGs
source: heldout
classes: [{classes}]
preprocess:
  scale: {step}          # PNG pixels are 15 x the 0..16 digit values
  mean: [0.0]
  std: [1.0]
  channels: L
  layout: NCHW
"""


@dataclass
class Digits:
    x_train: npt.NDArray[np.float32]  # (N, 1, 8, 8), values 0..16
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]


def load_split(seed: int = 0) -> Digits:
    data = load_digits()
    x = data.images.astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return Digits(x_train, y_train, x_test, y_test)


def train_model(d: Digits, *, seed: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Weights (64, 10) and bias (10,) of a logistic regression on x / 16."""
    clf = LogisticRegression(max_iter=2000, random_state=seed)
    clf.fit(d.x_train.reshape(len(d.x_train), -1) / 16.0, d.y_train)
    return clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32)


def export(weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], *, scale: float = 1 / 16) -> bytes:
    """The ONNX model. ``scale`` folds the input scaling into W (1/16 for raw 0..16 arrays)."""
    return linear_softmax_model(weights * np.float32(scale), bias, input_shape=["N", 1, 8, 8], classes=CLASSES)


def write_imagefolder(root: Path, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> Path:
    """Write held-out samples as ``root/heldout/<class>/<index>.png`` plus ``root/heldout.yaml``."""
    folder = root / "heldout"
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        pixels = (img[0] * PIXEL_STEP).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / CLASSES[label] / f"{i:04d}.png", optimize=True)
    spec = root / "heldout.yaml"
    spec.write_text(SPEC.format(classes=", ".join(f'"{c}"' for c in CLASSES), step=PIXEL_STEP))
    return spec
