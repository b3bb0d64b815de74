"""The baseline gate is measured against: a plain ONNX Runtime script on the same tensors.

    python benchmarks/plain_ort.py MODEL.onnx TENSORS.npy|SET.npz BATCH [cpu|cuda]

Loads the float32 tensors (an .npy, or the ``x`` of an .npz), creates the session, runs the
batches, takes the argmax and prints the number of samples per predicted class. Nothing else: no checks, no metrics.
"""

import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, tensors, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    provider = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    if provider == "cuda":
        ort.preload_dlls()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    x = np.load(tensors)["x"] if tensors.endswith(".npz") else np.load(tensors, mmap_mode="r")
    session = ort.InferenceSession(model, providers=providers)
    name = session.get_inputs()[0].name
    predicted = []
    for start in range(0, len(x), batch):
        (scores,) = session.run(None, {name: np.ascontiguousarray(x[start : start + batch])})
        predicted.append(scores.argmax(axis=1))
    print(np.bincount(np.concatenate(predicted)).tolist(), session.get_providers()[0])


if __name__ == "__main__":
    main()
