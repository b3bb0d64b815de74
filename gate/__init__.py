"""gate: a production-readiness gate for image classifiers.

A candidate ONNX model is run on a held-out labelled set; per-class metrics and the
confusion matrix are checked against a YAML policy; the answer is PASS, FAIL or ERROR.
"""

__version__ = "0.1.0"
