"""Realistically sized, deterministic workloads for the benchmarks.

Two ONNX image classifiers with random weights (a ResNet-18-shaped network, about 11 M
parameters, and a small, cheap CNN) on NCHW float32 input of 224×224, and a writer for an
ImageFolder of smooth random JPEGs. Nothing is downloaded: the same seed always gives the
same bytes, so benchmark figures are comparable between runs and machines.

Run as a script for a self-check: builds both models, runs them on the CPU with ONNX Runtime,
prints their sizes and throughput, and times writing a few JPEGs.
"""

from __future__ import annotations

import io
import math
import pathlib
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

OPSET = 17
IR_VERSION = 9  # what every onnxruntime >= 1.16 reads
INPUT = "x"
OUTPUT = "scores"
IMAGE_SIDE = 224

# The residual branch's last conv is scaled down so that the 8 additions of the shortcut
# grow the activations only slowly: with plain He initialisation each block would roughly
# double their variance, and the logits would be dominated by a few huge values.
_RESIDUAL_SCALE = 0.1


class _GraphBuilder:
    """Accumulates nodes and random initializers; names stay unique by construction."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def _const(self, array: npt.NDArray[np.float32], prefix: str) -> str:
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(
        self,
        x: str,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        *,
        scale: float = 1.0,
        relu: bool = False,
    ) -> str:
        """Conv with bias (batch norm folded away), He-normal weights, "same"-style padding."""
        fan_in = c_in * kernel * kernel
        std = math.sqrt(2.0 / fan_in) * scale
        weight = self.rng.normal(0.0, std, size=(c_out, c_in, kernel, kernel))
        # small, non-zero biases, as a folded batch norm would leave
        bias = self.rng.normal(0.0, 0.01, size=(c_out,))
        w_name = self._const(weight.astype(np.float32), "W")
        b_name = self._const(bias.astype(np.float32), "B")
        pad = kernel // 2
        out = self._name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w_name, b_name],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        out = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def add(self, a: str, b: str) -> str:
        out = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out]))
        return out

    def max_pool(self, x: str, kernel: int, stride: int) -> str:
        out = self._name("pool")
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "MaxPool", [x], [out], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4
            )
        )
        return out

    def head(self, x: str, c_in: int, num_classes: int) -> str:
        """GlobalAveragePool, Flatten and a Gemm to ``num_classes`` logits named ``OUTPUT``."""
        pooled = self._name("gap")
        flat = self._name("flat")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        self.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        # std 1/sqrt(fan_in): logits keep the scale of the pooled features, so classes differ
        weight = self.rng.normal(0.0, 1.0 / math.sqrt(c_in), size=(num_classes, c_in))
        bias = self.rng.normal(0.0, 0.01, size=(num_classes,))
        w_name = self._const(weight.astype(np.float32), "fc_W")
        b_name = self._const(bias.astype(np.float32), "fc_B")
        self.nodes.append(helper.make_node("Gemm", [flat, w_name, b_name], [OUTPUT], transB=1))
        return OUTPUT

    def serialize(self, graph_name: str, num_classes: int, side: int = IMAGE_SIDE) -> bytes:
        inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, side, side])]
        outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", num_classes])]
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _basic_block(g: _GraphBuilder, x: str, c_in: int, c_out: int, stride: int) -> str:
    h = g.conv(x, c_in, c_out, 3, stride, relu=True)
    h = g.conv(h, c_out, c_out, 3, 1, scale=_RESIDUAL_SCALE)
    # a projection only where the shape changes, as in the original ResNet ("option B")
    shortcut = g.conv(x, c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else x
    return g.relu(g.add(h, shortcut))


def resnet18(num_classes: int = 10, *, seed: int = 0) -> bytes:
    """A ResNet-18-shaped classifier with random weights, as serialized ONNX bytes.

    Input ``x`` float32 ``[N, 3, 224, 224]``, output ``scores`` ``[N, num_classes]`` (logits).
    About 11.2 M parameters (~45 MB) for 10 classes.
    """
    g = _GraphBuilder(seed)
    h = g.conv(INPUT, 3, 64, 7, 2, relu=True)
    h = g.max_pool(h, 3, 2)
    c_in = 64
    for stage, c_out in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h = _basic_block(g, h, c_in, c_out, stride)
            c_in = c_out
    g.head(h, c_in, num_classes)
    return g.serialize("resnet18", num_classes)


def small_cnn(num_classes: int = 10, *, seed: int = 0, side: int = IMAGE_SIDE) -> bytes:
    """A small, cheap CNN with random weights on the same input and output as :func:`resnet18`.

    Three strided 3×3 convs (16, 32, 64 channels) bring 224×224 down to 14×14 quickly, so the
    cost per image is dominated by reading the input, not by arithmetic.
    """
    g = _GraphBuilder(seed)
    h = g.conv(INPUT, 3, 16, 3, 4, relu=True)
    h = g.conv(h, 16, 32, 3, 2, relu=True)
    h = g.conv(h, 32, 64, 3, 2, relu=True)
    g.head(h, 64, num_classes)
    return g.serialize("small_cnn", num_classes, side)


def parameter_count(model_bytes: bytes) -> int:
    """The number of values held in the model's initializers."""
    model = onnx.load_from_string(model_bytes)
    return sum(math.prod(t.dims) for t in model.graph.initializer)


def _jpeg_bytes(seed: int, i: int, size: tuple[int, int], quality: int) -> bytes:
    # seeding from (seed, i) makes each image independent of how the work is split over workers
    rng = np.random.default_rng([seed, i])
    width, height = size
    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BILINEAR))
    # a little noise gives the encoder and decoder real high-frequency work, as photographs do
    noise = rng.integers(-12, 13, size=smooth.shape, dtype=np.int16)
    pixels = np.clip(smooth.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_range(
    root: str, start: int, stop: int, classes: int, size: tuple[int, int], seed: int, quality: int
) -> None:
    base = pathlib.Path(root)
    for i in range(start, stop):
        path = base / f"c{i % classes:02d}" / f"{i:06d}.jpg"
        path.write_bytes(_jpeg_bytes(seed, i, size, quality))


def write_jpeg_folder(
    root: pathlib.Path,
    n: int,
    *,
    classes: int = 10,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    quality: int = 90,
    workers: int = 2,
) -> list[str]:
    """Write an ImageFolder ``root/c{k:02d}/{i:06d}.jpg`` of ``n`` smooth random RGB JPEGs.

    Image ``i`` goes to class ``i % classes``, so labels are balanced; its content depends only on
    ``(seed, i)``. ``size`` is ``(width, height)``. Returns the class folder names, sorted.
    """
    if n < 0 or classes < 1:
        raise ValueError(f"need n >= 0 and classes >= 1, got n={n}, classes={classes}")
    names = [f"c{k:02d}" for k in range(classes)]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    # chunks of up to a few hundred images keep the per-task overhead of the pool negligible,
    # yet small jobs still give every worker several chunks to balance the load
    chunk = max(1, min(500, math.ceil(n / (4 * max(workers, 1)))))
    ranges = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    if workers <= 1 or len(ranges) <= 1:
        for start, stop in ranges:
            _write_range(str(root), start, stop, classes, size, seed, quality)
        return names
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_range, str(root), a, b, classes, size, seed, quality) for a, b in ranges]
        for future in futures:
            future.result()  # re-raises a worker's error here
    return names


def _self_check() -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    for build in (resnet18, small_cnn):
        model_bytes = build()
        assert model_bytes == build(), "models must be deterministic"
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        print(
            f"{build.__name__}: {parameter_count(model_bytes):,} parameters, "
            f"{len(model_bytes) / 1e6:.1f} MB, {len(session.get_inputs()[0].shape)}-d input"
        )
        for batch in (4, 32):
            x = rng.standard_normal((batch, 3, IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32)
            (scores,) = session.run([OUTPUT], {INPUT: x})
            assert np.isfinite(scores).all(), "non-finite logits"
            assert np.ptp(scores) > 1e-3, "logits all equal"
            runs = 5
            start = time.perf_counter()
            for _ in range(runs):
                session.run([OUTPUT], {INPUT: x})
            elapsed = time.perf_counter() - start
            print(
                f"  batch {batch}: output {scores.shape}, logits std {scores.std():.3g}, "
                f"argmax {np.bincount(scores.argmax(axis=1), minlength=scores.shape[1]).tolist()}, "
                f"{runs * batch / elapsed:,.0f} img/s"
            )

    n = 200
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        names = write_jpeg_folder(pathlib.Path(tmp), n)
        elapsed = time.perf_counter() - start
        files = sorted(pathlib.Path(tmp).rglob("*.jpg"))
        total = sum(f.stat().st_size for f in files)
        print(
            f"write_jpeg_folder: {len(files)} JPEGs in {len(names)} classes, {elapsed:.2f} s "
            f"({n / elapsed:,.0f} img/s), {total / len(files) / 1e3:.1f} kB each"
        )


if __name__ == "__main__":
    _self_check()
