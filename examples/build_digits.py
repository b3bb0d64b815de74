"""Rebuild the bundled demo: ``examples/digits/`` (held-out PNGs, spec, two models).

``good.onnx`` is a logistic regression trained on scikit-learn's digits. ``bad.onnx`` is
the same model with the bias of class "eight" lowered until it is rarely predicted: overall
accuracy stays near 90% while recall on "eight" collapses, the failure gate exists to catch.

Run with the dev dependencies installed: ``make examples``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.digits import export, load_split, train_model, write_imagefolder  # noqa: E402

BAD_CLASS = 8
BAD_BIAS_DROP = 4.0


def main() -> None:
    out = ROOT / "examples" / "digits"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    split = load_split()
    w, b = train_model(split)
    (out / "good.onnx").write_bytes(export(w, b))
    bad_b = b.copy()
    bad_b[BAD_CLASS] -= np.float32(BAD_BIAS_DROP)
    (out / "bad.onnx").write_bytes(export(w, bad_b))
    write_imagefolder(out, split.x_test, split.y_test)
    print(f"wrote {out}: {len(split.y_test)} held-out PNGs, good.onnx, bad.onnx")


if __name__ == "__main__":
    main()
