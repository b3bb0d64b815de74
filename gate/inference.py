"""ONNX Runtime inference: sessions, execution providers, batching and output checks.

Providers: ``cpu``; ``cuda`` (an error unless CUDA really runs); ``auto`` (CUDA when it
really runs, else CPU). onnxruntime-gpu lists the CUDA provider as available even where
its libraries cannot load, so the provider that actually ran is read back from the
session (``session.get_providers()``) and reported, never assumed.

The model contract (README.md, "Model contract"): one input; one output of shape (N, K) holding logits or
probabilities; K equal to the number of classes; class names in the model metadata
``classes`` (a JSON list), when present, equal to the dataset's. Anything else, and any
NaN or Inf in the output, is a ModelError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from gate.datasets.input_cast import cast_for_model
from gate.errors import ModelError, ProviderError
from gate.predictions import TOP_K, ranked, top_k
from gate.providers import CPU, CUDA, PROVIDERS, Provider

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64

_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}

_cuda_preloaded = False

# y = x as a serialized ONNX model (opset 17): enough to learn whether a provider initialises
_PROBE_MODEL = (
    b'\x08\t:;\n\x10\n\x01x\x12\x01y"\x08Identity\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01b'
    b"\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\x11"
)


def _preload_cuda() -> None:
    """Let onnxruntime find CUDA/cuDNN libraries installed as Python packages.

    Done once, quietly: onnxruntime prints its findings to stdout, which belongs to the
    verdict JSON.
    """
    global _cuda_preloaded
    if _cuda_preloaded or not hasattr(ort, "preload_dlls"):
        return
    _cuda_preloaded = True
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ort.preload_dlls()
    except Exception as e:  # missing libraries are reported by the provider check below
        log.debug("onnxruntime.preload_dlls failed: %s", e)
    if sink.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", sink.getvalue().strip())


@functools.cache
def cuda_runs() -> bool:
    """Whether the CUDA execution provider really initialises here (asked once)."""
    if CUDA not in ort.get_available_providers():
        return False
    _preload_cuda()
    ort.set_default_logger_severity(4)  # the probe's failure is the answer, not news
    try:
        session = _session(_PROBE_MODEL, [CUDA, CPU], "the CUDA probe")
    except ModelError:
        return False
    finally:
        ort.set_default_logger_severity(3)
    return bool(session.get_providers()[0] == CUDA)


def runtime_versions() -> dict[str, str]:
    return {"onnxruntime": ort.__version__, "numpy": np.__version__}


def cuda_device_name() -> str | None:
    """The GPU's name, from the NVIDIA management library when it is installed."""
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None


@dataclass
class LoadedModel:
    """An ONNX Runtime session plus what gate learnt about the model."""

    session: ort.InferenceSession
    sha256: str
    source: str
    provider: str  # the execution provider that actually runs it
    input_name: str
    input_shape: tuple[int | str | None, ...]
    input_dtype: Any
    output_name: str
    output_shape: tuple[int | str | None, ...]
    classes: list[str] | None  # from metadata, when the model declares them
    requested_provider: Provider = "auto"
    notes: list[str] = field(default_factory=list)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None for a dynamic batch axis."""
        dim = self.input_shape[0] if self.input_shape else None
        return dim if isinstance(dim, int) and dim > 0 else None

    def runtime(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            **runtime_versions(),
            "provider": self.provider,
            "requested_provider": self.requested_provider,
            "session_providers": list(self.session.get_providers()),
        }
        if self.provider == CUDA:
            info["device"] = cuda_device_name()
        return info


#: CUDA execution provider options. TF32 is off: it rounds FP32 matrix products to a
#: 10-bit mantissa, which moved probabilities by up to 9e-4 on an H200 and can flip a
#: near-tie; a gate measures the model at the precision it declares.
CUDA_OPTIONS: dict[str, str] = {"use_tf32": "0"}


def _session(data: bytes, providers: list[str], source: str, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # provider fall-backs are reported by gate itself; keep onnxruntime's own log quiet
    options.log_severity_level = 3
    # 0 lets ONNX Runtime use every core; a server running several evaluations at once
    # gives each session its share instead, so they do not fight over the same cores
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(
            data, sess_options=options, providers=[(p, CUDA_OPTIONS) if p == CUDA else p for p in providers]
        )
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load model {source}: {text}") from e


# Where tensors can sit in a serialized ModelProto: per message, the field numbers of its
# sub-messages that can hold tensors (onnx.proto3; tests/test_corpus.py checks them
# against onnx's own descriptors). Everything else is skipped by its length.
_TENSOR_PATHS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_MAX_NESTING = 100  # protobuf's own default recursion limit


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one protobuf message; stops at malformed bytes
    (ONNX Runtime then refuses the model with its own message)."""

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while pos < len(buf) and shift < 64:
            byte = buf[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos
        raise ValueError("truncated varint")

    pos = 0
    try:
        while pos < len(buf):
            key, pos = varint(pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = varint(pos)
                yield number, wire, value
            elif wire == 2:
                size, pos = varint(pos)
                if pos + size > len(buf):
                    return
                yield number, wire, buf[pos : pos + size]
                pos += size
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:  # groups (unused by ONNX) or garbage
                return
    except ValueError:
        return


def external_tensors(data: bytes) -> list[tuple[str, str | None]]:
    """(name, location) of every tensor whose data the model keeps outside its own bytes
    (``data_location: EXTERNAL``), read from the protobuf wire format without onnx."""
    if b"location" not in data:  # an external tensor names its file under the key "location"
        return []
    found: list[tuple[str, str | None]] = []
    stack: list[tuple[str, memoryview, int]] = [("model", memoryview(data), 0)]
    while stack:
        kind, buf, depth = stack.pop()
        if kind == "tensor":
            name, location, external = "", None, False
            for number, _, value in _fields(buf):
                if number == _TENSOR_NAME and isinstance(value, memoryview):
                    name = bytes(value).decode("utf-8", "replace")
                elif number == _TENSOR_DATA_LOCATION and value == _EXTERNAL:
                    external = True
                elif number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
                    entry = {n: bytes(v).decode("utf-8", "replace") for n, _, v in _fields(value) if n in (1, 2)}
                    if entry.get(1) == "location":
                        location = entry.get(2, "")
            if external:
                found.append((name, location))
            continue
        if depth >= _MAX_NESTING:
            continue
        nested = _TENSOR_PATHS[kind]
        for number, wire, value in _fields(buf):
            if wire == 2 and number in nested and isinstance(value, memoryview):
                stack.append((nested[number], value, depth + 1))
    return found


def _refuse_external_data(data: bytes, source: str) -> None:
    """gate loads models from bytes, so a tensor kept in another file cannot be resolved
    (and ONNX Runtime would look for it relative to the process's working directory)."""
    tensors = external_tensors(data)
    if not tensors:
        return
    name, location = tensors[0]
    more = f" (and {len(tensors) - 1} more tensor(s))" if len(tensors) > 1 else ""
    fix = "gate loads self-contained models only: save it with its weights inside"
    if not location:
        raise ModelError(f"model {source} keeps tensor '{name}' in external data without a location{more}; {fix}")
    posix = location.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[0].isalpha() and posix[1] == ":"):  # C:\ on Windows
        raise ModelError(
            f"model {source} keeps tensor '{name}' in an external file at the absolute path '{location}'{more};"
            f" absolute external data paths are refused, and {fix}"
        )
    if posixpath.normpath(posix).split("/")[0] == "..":
        raise ModelError(
            f"model {source} keeps tensor '{name}' in an external file '{location}' outside the model's"
            f" directory{more}; external data paths that leave the model's directory are refused, and {fix}"
        )
    raise ModelError(f"model {source} keeps tensor '{name}' in an external file '{location}'{more}; {fix}")


def load_model(
    data: bytes, *, provider: Provider = "auto", source: str = "<bytes>", threads: int = 0, sha256: str | None = None
) -> LoadedModel:
    """Create a session for ONNX bytes on the requested provider and check its signature.

    ``sha256`` is the bytes' SHA-256 when the caller already knows it (it is not computed again)."""
    if provider not in PROVIDERS:
        raise ProviderError(f"provider={provider!r} is not valid. It should be one of {', '.join(PROVIDERS)}.")
    if not data:
        raise ModelError(f"cannot load model {source}: the file is empty")
    _refuse_external_data(data, source)
    available = ort.get_available_providers()
    notes: list[str] = []
    if provider == "cpu" or (provider == "auto" and CUDA not in available):
        wanted = [CPU]
    elif CUDA in available:
        _preload_cuda()
        wanted = [CUDA, CPU]
        if provider == "auto":
            # a failed CUDA load is expected on machines without a GPU; gate reports the
            # fall-back itself, so keep onnxruntime's error line about it off stderr
            ort.set_default_logger_severity(4)
    else:
        raise ProviderError(
            f"provider 'cuda' requested, but this onnxruntime ({ort.__version__}) has no CUDA"
            f" execution provider (available: {', '.join(available)}); install onnxruntime-gpu"
        )
    try:
        session = _session(data, wanted, source, threads)
    finally:
        ort.set_default_logger_severity(3)
    actual = session.get_providers()[0]
    if CUDA in wanted and actual != CUDA:
        if provider == "cuda":
            raise ProviderError(
                "provider 'cuda' requested, but the CUDA execution provider could not be initialised"
                " (no GPU, or CUDA/cuDNN libraries missing); refusing to fall back to CPU"
            )
        notes.append("CUDA execution provider is listed but could not be initialised; ran on CPU")
        log.info(notes[-1])

    inp, out, out_shape = _signature(session, source)
    return LoadedModel(
        session=session,
        sha256=sha256 if sha256 is not None else hashlib.sha256(data).hexdigest(),
        source=source,
        provider=actual,
        input_name=inp.name,
        input_shape=tuple(inp.shape or ()),
        input_dtype=_ORT_TYPES[inp.type],
        output_name=out.name,
        output_shape=out_shape,
        classes=_metadata_classes(session, source),
        requested_provider=provider,
        notes=notes,
    )


def _signature(session: ort.InferenceSession, source: str) -> tuple[Any, Any, tuple[int | str | None, ...]]:
    """The model's one input and one output, and the output's shape as far as it is known;
    ModelError for anything else than one numeric input and one tensor output of rank 2."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(f"'{i.name}'" for i in inputs)
        raise ModelError(f"model {source} has {len(inputs)} inputs ({names}); gate needs exactly one image input")
    if len(outputs) != 1:
        names = ", ".join(f"'{o.name}' ({_described(o.type)})" for o in outputs)
        raise ModelError(
            f"model {source} has {len(outputs)} outputs ({names}); gate needs exactly one (N, K) scores output"
        )
    inp, out = inputs[0], outputs[0]
    if inp.type not in _ORT_TYPES:
        raise ModelError(f"model {source} input '{inp.name}' has type {inp.type}; gate feeds numeric tensors")
    if not str(out.type).startswith("tensor("):
        raise ModelError(
            f"model {source} output '{out.name}' is {_described(out.type)}, not a tensor; gate needs one (N, K)"
            " tensor of scores (a scikit-learn classifier converted with its default ZipMap answers a sequence of"
            " maps: convert it with the ZipMap disabled, e.g. skl2onnx options={'zipmap': False}, and keep only"
            " the probabilities output)"
        )
    out_shape = tuple(out.shape) if out.shape is not None else ()
    # ONNX Runtime reports rank 0 when the declared shape cannot be merged with the one it
    # infers (or none is declared): the real shape is checked on every batch instead
    if len(out_shape) not in (0, 2):
        raise ModelError(
            f"model {source} output '{out.name}' has rank {len(out_shape)} (shape {list(out_shape)});"
            " gate needs (N, K) scores"
        )
    return inp, out, out_shape


def _described(ort_type: str) -> str:
    """An ONNX Runtime value type in words: ``seq(map(int64,tensor(float)))`` is a sequence of maps."""
    if ort_type.startswith("seq(map("):
        return f"a sequence of maps ({ort_type})"
    if ort_type.startswith("seq("):
        return f"a sequence ({ort_type})"
    if ort_type.startswith("map("):
        return f"a map ({ort_type})"
    return f"a {ort_type}"


def _metadata_classes(session: ort.InferenceSession, source: str) -> list[str] | None:
    """The class names the model declares in its metadata ``classes``, when it does."""
    meta = session.get_modelmeta().custom_metadata_map
    if "classes" not in meta:
        return None
    try:
        parsed = json.loads(meta["classes"])
    except json.JSONDecodeError as e:
        raise ModelError(f"model {source} metadata 'classes' is not JSON: {e}") from e
    if not isinstance(parsed, list) or not all(isinstance(c, str) for c in parsed):
        raise ModelError(f"model {source} metadata 'classes' must be a JSON list of strings")
    return parsed


def check_compatible(model: LoadedModel, classes: Sequence[str], sample_shape: tuple[int, ...]) -> None:
    """Raise ModelError when the model cannot be scored against this dataset."""
    k = len(classes)
    if model.output_shape and isinstance(model.output_shape[1], int) and model.output_shape[1] != k:
        raise ModelError(
            f"model {model.source} outputs {model.output_shape[1]} classes; the dataset has {k} ({', '.join(classes)})"
        )
    if model.classes is not None and list(model.classes) != list(classes):
        raise ModelError(
            f"model {model.source} metadata classes {model.classes} differ from the dataset's classes"
            f" {list(classes)} (same names in the same order are required)"
        )
    expected = model.input_shape[1:]
    if model.input_shape and (
        len(expected) != len(sample_shape)
        or any(isinstance(d, int) and d != s for d, s in zip(expected, sample_shape, strict=False))
    ):
        shown = ["N" if not isinstance(d, int) else d for d in model.input_shape]
        raise ModelError(
            f"model {model.source} input '{model.input_name}' expects shape {shown}; the dataset's"
            f" samples have shape {list(sample_shape)} (adjust the dataset spec's preprocess:"
            " resize, crop, channels, layout)"
        )


class SessionCache:
    """Loaded models by (SHA-256, requested provider), least recently used dropped first.

    ONNX Runtime sessions are safe to run from several threads at once, so evaluations
    of the same model share one; creating a session (graph optimisation, weights to the
    device) is paid once.
    """

    def __init__(self, capacity: int = 4, *, threads: int = 0) -> None:
        self.capacity = capacity
        self.threads = threads
        self._entries: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        data: bytes,
        *,
        provider: Provider,
        source: str,
        sha256: str | None = None,
        variant: str = "",
        transform: Callable[[bytes], bytes] | None = None,
    ) -> tuple[LoadedModel, bool]:
        """The loaded model for ``data`` and whether it came from the cache. ``sha256``: the
        bytes' SHA-256 when the caller knows it (evaluations hash each model once).

        ``variant`` names a derived session of the same model (e.g. with the normalisation
        in its graph, :mod:`gate.preprocess_graph`) that ``transform(data)`` builds on a
        miss; it is cached beside the model's own session, under the model's SHA-256."""
        digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
        key = (digest, provider, variant)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return dataclasses.replace(hit, source=source, notes=list(hit.notes)), True
        onnx_bytes = transform(data) if transform is not None else data
        loaded = load_model(onnx_bytes, provider=provider, source=source, threads=self.threads, sha256=digest)
        with self._lock:
            self._entries[key] = loaded
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return loaded, False


def resolve_provider(provider: Provider) -> str:
    """The execution provider ``provider`` will run on here, without loading a model."""
    if provider == "cpu":
        return CPU
    if cuda_runs():
        return CUDA
    if provider == "cuda":
        raise ProviderError("provider 'cuda' requested, but the CUDA execution provider cannot run here")
    return CPU


def auto_batch_size(sample_shape: tuple[int, ...], itemsize: int = 4) -> int:
    """A batch of about 24 MiB of input, as a power of two between 8 and 512: large
    enough to keep the runtime busy, small enough to stay in cache and memory."""
    sample_bytes = max(1, int(np.prod(sample_shape)) * itemsize)
    target = (24 << 20) // sample_bytes
    size = 1 << max(0, target.bit_length() - 1)
    return int(min(512, max(8, size)))


@dataclass
class Predictions:
    """Per-sample outputs kept after inference: the predicted class, the probability the
    model gave it, and the most probable classes with their probabilities."""

    labels: npt.NDArray[np.int64]  # the predicted class per sample
    confidence: npt.NDArray[np.float32]  # the winning class's probability (see `confidences`)
    top_classes: npt.NDArray[np.int64]  # (N, k) the k most probable classes, best first
    top_scores: npt.NDArray[np.float32]  # (N, k) their probabilities
    label_scores: npt.NDArray[np.float32] | None = None  # the given label's probability, when labels were given


def confidences(y: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """The probability of the predicted class, per row of scores (the rule of
    :func:`gate.predictions.probabilities`: a probability row as it is, else a softmax)."""
    return top_k(y, 1)[1][:, 0]


def _chunks(model: LoadedModel, batches: Iterable[npt.NDArray[Any]]) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """What each session run gets: (real samples, input). A fixed-batch model gets
    exactly its batch size, the tail padded with zeros (its outputs are dropped)."""
    fixed = model.fixed_batch
    for batch in batches:
        x = cast_for_model(batch, model.input_dtype)  # refuses values the cast would change
        if fixed is None:
            yield len(x), x
            continue
        for i in range(0, len(x), fixed):
            part = x[i : i + fixed]
            n = len(part)
            if n < fixed:
                part = np.concatenate([part, np.zeros((fixed - n, *x.shape[1:]), dtype=x.dtype)])
            yield n, part


def _failed(model: LoadedModel, start: int, n: int, e: Exception) -> ModelError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ModelError(f"model {model.source} failed on samples {start}..{start + n - 1}: {first}")


def _run_plain(model: LoadedModel, chunks: Iterable[tuple[int, npt.NDArray[Any]]]) -> Iterator[npt.NDArray[Any]]:
    done = 0
    for n, x in chunks:
        try:
            (y,) = model.session.run([model.output_name], {model.input_name: x})
        except Exception as e:
            raise _failed(model, done, n, e) from e
        done += n
        yield _rows(model, np.asarray(y), len(x), n, done - n)


def _rows(model: LoadedModel, y: npt.NDArray[Any], fed: int, real: int, start: int) -> npt.NDArray[Any]:
    """The real samples' rows of an output: exactly one row per input row, or ModelError
    (a model that answers more or fewer rows than it was given cannot be judged)."""
    if y.ndim < 1 or y.shape[0] != fed:
        raise ModelError(
            f"model {model.source} returned {y.shape[0] if y.ndim else 'no'} rows for the {fed} samples"
            f" {start}..{start + real - 1} it was given; gate needs one row of scores per sample"
        )
    return y[:real]


def _run_bound(model: LoadedModel, chunks: Iterable[tuple[int, npt.NDArray[Any]]]) -> Iterator[npt.NDArray[Any]]:
    """CUDA: each input is copied to the device (``OrtValue.ortvalue_from_numpy``, a copy
    made there and then) and bound by its own IO binding, one batch ahead on a helper
    thread, while the current batch runs (ONNX Runtime releases the GIL while it runs),
    so host-to-device copies overlap compute. With the normalisation in the graph
    (:mod:`gate.preprocess_graph`) what crosses is 8-bit pixels, a quarter of float32.
    Outputs are allocated on the device and copied back once, (N, K) per batch."""
    session = model.session

    def bind(x: npt.NDArray[Any]) -> Any:
        binding = session.io_binding()
        binding.bind_ortvalue_input(model.input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        binding.bind_output(model.output_name, "cuda")
        return binding

    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-h2d") as stager:
        queue = iter(chunks)
        first = next(queue, None)
        if first is None:
            return
        ahead: tuple[int, int, Future[Any]] | None = (first[0], len(first[1]), stager.submit(bind, first[1]))
        while ahead is not None:
            n, fed, pending = ahead
            nxt = next(queue, None)
            ahead = None if nxt is None else (nxt[0], len(nxt[1]), stager.submit(bind, nxt[1]))
            try:
                binding = pending.result()
                session.run_with_iobinding(binding)
                y = binding.copy_outputs_to_cpu()[0]
            except Exception as e:
                raise _failed(model, done, n, e) from e
            done += n
            yield _rows(model, np.asarray(y), fed, n, done - n)


def predict(
    model: LoadedModel,
    batches: Iterable[npt.NDArray[Any]],
    *,
    n_classes: int,
    total: int,
    sample_ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    io_binding: bool = True,
    labels: npt.NDArray[np.int64] | None = None,
) -> Predictions:
    """Run every batch; check each output; keep the top classes and their probabilities,
    and, when the samples' ``labels`` are given, the probability of each one's label.

    On CUDA, ``io_binding`` stages inputs on the device a batch ahead (see
    :func:`_run_bound`); elsewhere, and with ``io_binding=False``, plain ``run``.
    """
    ranks = _RankedRows(total, min(TOP_K, n_classes), labels)
    done = 0
    runner = _run_bound if io_binding and model.provider == CUDA else _run_plain
    for y in runner(model, _chunks(model, batches)):
        n = len(y)
        _check_output(model, y, n_classes, done, sample_ids)
        if done + n > total:
            raise ModelError(f"the dataset yielded more than its {total} samples")
        ranks.add(y)
        done += n
        if progress is not None:
            progress(done, total)
    if done != total:
        raise ModelError(f"inference covered {done} of {total} samples")
    ranks.flush()
    return Predictions(
        labels=ranks.classes[:, 0].copy(),
        confidence=ranks.scores[:, 0].copy(),
        top_classes=ranks.classes,
        top_scores=ranks.scores,
        label_scores=ranks.label_scores,
    )


class _RankedRows:
    """The top classes and probabilities of every output row, ranked a block of batches at
    a time: ranking is row by row, so the result does not depend on the blocks, and for
    small batches the fixed cost of each ranking call would otherwise be a measurable part
    of the evaluation (about 2 % of a small CNN's, in 32-sample batches)."""

    BLOCK_BYTES = 1 << 24  # of float64 scores ranked at once

    def __init__(self, total: int, k: int, labels: npt.NDArray[np.int64] | None) -> None:
        self.k = k
        self.classes = np.empty((total, k), dtype=np.int64)
        self.scores = np.empty((total, k), dtype=np.float32)
        if labels is not None and len(labels) != total:
            raise ValueError(f"{len(labels)} labels for {total} samples")
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.label_scores = None if labels is None else np.empty(total, dtype=np.float32)
        self._pending: list[npt.NDArray[Any]] = []
        self._rows = 0
        self._start = 0

    def add(self, y: npt.NDArray[Any]) -> None:
        self._pending.append(y)
        self._rows += len(y)
        if self._rows * y.shape[1] * 8 >= self.BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        start, end = self._start, self._start + len(block)
        given = None if self._labels is None else self._labels[start:end]
        self.classes[start:end], self.scores[start:end], scores = ranked(block, self.k, given)
        if self.label_scores is not None and scores is not None:
            self.label_scores[start:end] = scores
        self._pending, self._rows, self._start = [], 0, end


def _check_output(
    model: LoadedModel, y: npt.NDArray[Any], n_classes: int, done: int, sample_ids: Sequence[str] | None
) -> None:
    """ModelError unless one batch's output is (n, K) finite numbers."""
    if y.ndim != 2:
        declared = f" (declared {list(model.output_shape)})" if model.output_shape else ""
        raise ModelError(
            f"model {model.source} output '{model.output_name}' has shape {list(y.shape)} for a batch of {len(y)}"
            f"{declared}; gate needs (N, K) scores: one row of K class scores per sample"
        )
    if y.shape[1] != n_classes:
        raise ModelError(f"model {model.source} outputs {y.shape[1]} classes; the dataset has {n_classes}")
    if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
        raise ModelError(f"model {model.source} output has non-numeric type {y.dtype}")
    finite = np.isfinite(y).all(axis=1) if np.issubdtype(y.dtype, np.floating) else None
    if finite is not None and not finite.all():
        bad = int(np.argmin(finite))
        sid = sample_ids[done + bad] if sample_ids is not None else f"#{done + bad}"
        kind = "NaN" if np.isnan(y[bad]).any() else "Inf"
        raise ModelError(
            f"model {model.source} output holds {kind} for sample {sid} (index {done + bad});"
            " a model that emits non-finite scores cannot be judged"
        )
