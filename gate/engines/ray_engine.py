"""Sharded evaluation on a Ray cluster, with Ray Data.

The dataset is cut into *shards*: runs of consecutive samples. Ray Data carries one row
per shard through the pipeline:

1. **decode** (image sets): every file of the shard is read, checked against the digest
   taken when the dataset was loaded, decoded, resized and cropped by the local engine's
   own per-sample decoder (``Dataset.pixel_source.pixels``), and normalised into model
   input by its own :func:`gate.datasets.images.normalise`: the shard's ``(n, *sample
   shape)`` tensor, exactly what the local engine feeds the model. An ``.npz`` set needs
   no decoding: the driver slices it with the local engine's own
   ``Dataset.batches(shard_size)`` and puts each slice in the object store.
2. **infer**: a pool of actors. Each loads the model once
   (:func:`gate.inference.load_model`, from bytes in the object store) and runs
   :func:`gate.inference.predict` over its shards in batches, so the output checks (NaN
   or Inf, one row per sample, the class count) and the confidences are the local
   engine's. It answers with the shard's predictions, its confusion matrix and its
   calibration bins.

Where it runs: on a cluster with GPUs (and ``provider`` ``auto`` or ``cuda``) there is one
actor per GPU (``num_gpus=1``) and decoding runs in separate CPU tasks, as many as the
CPUs allow, which feed them. On a CPU-only cluster the actors decode their own shards
(``decode="actors"``): every CPU does both, and no shard's tensors are copied through
the object store; ``decode="tasks"`` asks for separate decode tasks there too.

The driver checks that every sample is covered by exactly one shard, sums the shard
confusion matrices, merges the calibration bins (their counts are additive, exactly) and
gathers the predictions in dataset order. A failure in any shard (a model that emits NaN,
an image that does not decode, a worker that died) raises a :class:`GateError` naming the
shard and the sample; a partial result is never returned.

Image files are read by their absolute paths on whichever node decodes them: on a
multi-node cluster the held-out set must be mounted at the same path on every node.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from gate.datasets import Dataset, Preprocess
from gate.datasets import images as _images
from gate.errors import (
    DatasetError,
    GateError,
    InternalError,
    ModelError,
    ProviderError,
    RequestError,
)
from gate.inference import (
    LoadedModel,
    Predictions,
    auto_batch_size,
    check_compatible,
    load_model,
    predict,
)
from gate.metrics import CALIBRATION_BINS, Calibration, confusion_matrix
from gate.providers import CPU, CUDA, PROVIDERS, Provider

if TYPE_CHECKING:
    from types import ModuleType

log = logging.getLogger(__name__)

__all__ = ["SHARD_BYTES", "Decode", "ShardedResult", "evaluate_sharded", "ray_installed"]

Decode = Literal["auto", "tasks", "actors"]
DECODE_MODES: tuple[Decode, ...] = ("auto", "tasks", "actors")

#: Largest shard by default, in bytes of model input (float32 tensors for images, the
#: stored tensors for .npz): what one row of the pipeline holds in the object store.
SHARD_BYTES = 128 << 20
#: Shards per actor by default, at least: enough for a slow shard not to hold up the end.
SHARDS_PER_ACTOR = 4
#: Times an inference actor that died (killed, out of memory, crashed) is restarted and
#: its shard retried before the evaluation fails; a retried shard gives the same answer.
WORKER_RETRIES = 3

_INSTALL_HINT = "install gate[ray] (pip install 'gate[ray]')"


# --------------------------------------------------------------------------- result


@dataclass
class ShardedResult:
    """What the shards computed, reduced on the driver."""

    predictions: Predictions  # per sample, in dataset order (gathered from the shards)
    confusion: npt.NDArray[np.int64]  # sum of the per-shard confusion matrices (K x K)
    calibration: Calibration  # merge of the per-shard calibration bins
    runtime: dict[str, Any]  # engine "ray", ray version, address, shards, actors, provider that ran, batch size


# --------------------------------------------------------------------------- Ray, lazily


def ray_installed() -> bool:
    """Whether Ray (the ``gate[ray]`` extra) can be imported here."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def _ray() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RequestError(f"the ray engine needs Ray, which is not installed here: {_INSTALL_HINT}") from e
    return ray


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs to know about the evaluation; put in the object store once."""

    source: str  # how messages name the model
    classes: list[str]
    labels: npt.NDArray[np.int64]
    sample_ids: list[str]
    sample_shape: tuple[int, ...]
    shards: list[tuple[int, int]]  # [start, stop) of each shard, in order, covering the set
    pixels: Any  # the dataset's image decoder (``Dataset.pixel_source``); None for .npz
    preprocess: Preprocess | None  # images: how pixels become model input
    arrays: list[Any]  # .npz: an ObjectRef to each shard's tensor, in shard order

    def where(self, k: int) -> str:
        start, stop = self.shards[k]
        return f"shard {k + 1} of {len(self.shards)} (samples {start}..{stop - 1})"


_PLANS: dict[bytes, _Plan] = {}


def _plan(ref: Any) -> _Plan:
    """The plan behind ``ref``, fetched once per worker process."""
    key: bytes = ref.binary()
    plan = _PLANS.get(key)
    if plan is None:
        plan = _ray().get(ref)
        _PLANS.clear()  # one evaluation at a time per worker: keep only the current plan
        _PLANS[key] = plan
    return plan


#: Images decoded before they are normalised together (bounds the 8-bit staging array).
_DECODE_CHUNK = 64


def _shard_input(plan: _Plan, k: int) -> npt.NDArray[Any]:
    """Shard ``k``'s model input, ``(n, *sample_shape)``: images decoded and normalised by
    the dataset's own code, or the .npz slice the driver put in the object store."""
    if plan.pixels is None:
        x: npt.NDArray[Any] = _ray().get(plan.arrays[k])
        return x
    assert plan.preprocess is not None
    start, stop = plan.shards[k]
    source = plan.pixels
    out = np.empty((stop - start, *plan.sample_shape), dtype=np.float32)
    for i in range(start, stop, _DECODE_CHUNK):
        j = min(i + _DECODE_CHUNK, stop)
        # each sample read, checked against its load-time digest, decoded, resized and cropped
        pixels = np.stack([source.pixels(s) for s in range(i, j)])
        _images.normalise(pixels, plan.preprocess, out[i - start : j - start])
    return out


def _model_batches(x: npt.NDArray[Any], size: int) -> Iterator[npt.NDArray[Any]]:
    for i in range(0, len(x), size):
        yield x[i : i + size]


_INDEX = re.compile(r"\(index (\d+)\)")
_RANGE = re.compile(r"samples (\d+)\.\.(\d+)")


def _dataset_positions(message: str, start: int) -> str:
    """A message of :func:`predict`, which counts samples from the start of the shard it
    was given, with those positions counted from the start of the dataset instead."""
    message = _INDEX.sub(lambda m: f"(index {int(m.group(1)) + start})", message)
    return _RANGE.sub(lambda m: f"samples {int(m.group(1)) + start}..{int(m.group(2)) + start}", message)


# --------------------------------------------------------------------------- pipeline stages


def _row(values: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """One row of a Ray Data batch: every value wrapped in a leading axis of length 1."""
    return {key: np.asarray(value)[np.newaxis] for key, value in values.items()}


def _failure(plan: _Plan, k: int, error: GateError, extra: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    start, _ = plan.shards[k]
    text = _dataset_positions(error.message, start) if isinstance(error, ModelError) else error.message
    message = f"{plan.where(k)}: {text}"
    return _row({**extra, "shard": k, "error_type": error.kind, "error_message": message})


def _unexpected(what: str, e: Exception) -> InternalError:
    return InternalError(f"{what}: {type(e).__name__}: {e}")


def _decode_stage(batch: dict[str, npt.NDArray[Any]], plan: list[Any]) -> dict[str, npt.NDArray[Any]]:
    """Ray Data task: a shard descriptor in, its model input (or its error) out."""
    p = _plan(plan[0])
    k = int(batch["shard"][0])
    nothing = {"x": np.zeros((0, *p.sample_shape), dtype=np.float32)}
    try:
        x = _shard_input(p, k)
    except GateError as e:
        return _failure(p, k, e, nothing)
    except Exception as e:
        return _failure(p, k, _unexpected("decoding failed", e), nothing)
    return _row({"shard": k, "error_type": "", "error_message": "", "x": x})


class _ShardWorker:
    """Ray Data actor: loads the model once, then runs shards through it."""

    def __init__(self, plan: list[Any], model: list[Any], provider: Provider, batch_size: int | None, threads: int):
        ray = _ray()
        self._plan = _plan(plan[0])
        self._batch_size = batch_size
        context = ray.get_runtime_context()
        self._actor = str(context.get_actor_id() or os.getpid())
        self._model: LoadedModel | None = None
        self._error: GateError | None = None
        try:
            self._model = load_model(ray.get(model[0]), provider=provider, source=self._plan.source, threads=threads)
            check_compatible(self._model, self._plan.classes, self._plan.sample_shape)
        except GateError as e:
            self._error = e
        except Exception as e:
            self._error = _unexpected("the model could not be loaded on a Ray worker", e)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        plan = self._plan
        k = int(batch["shard"][0])
        k_classes = len(plan.classes)
        empty = {
            "labels": np.zeros(0, dtype=np.int64),
            "scores": np.zeros(0, dtype=np.float32),
            "confidence": np.zeros(0, dtype=np.float32),
            "confusion": np.zeros((0, 0), dtype=np.int64),
            "calibration": np.zeros((3, CALIBRATION_BINS), dtype=np.int64),
            "provider": "",
            "session_providers": "",
            "batch_size": 0,
            "actor": self._actor,
        }
        if "error_type" in batch and str(batch["error_type"][0]):  # the decode task failed: pass it on
            failed = {"error_type": batch["error_type"][0], "error_message": batch["error_message"][0]}
            return _row({**empty, "shard": k, **failed})
        if self._error is not None or self._model is None:
            return _failure(plan, k, self._error or InternalError("the model is not loaded"), empty)
        model = self._model
        try:
            x = batch["x"][0] if "x" in batch else _shard_input(plan, k)
            start, stop = plan.shards[k]
            size = model.fixed_batch or self._batch_size or auto_batch_size(plan.sample_shape)
            preds = predict(
                model,
                _model_batches(x, size),
                n_classes=k_classes,
                total=stop - start,
                sample_ids=plan.sample_ids[start:stop],
            )
            y = plan.labels[start:stop]
            calibration = Calibration.from_predictions(y == preds.labels, preds.confidence)
            return _row(
                {
                    "shard": k,
                    "error_type": "",
                    "error_message": "",
                    "labels": preds.labels,
                    "scores": preds.scores,
                    "confidence": preds.confidence,
                    "confusion": confusion_matrix(y, preds.labels, k_classes),
                    "calibration": np.stack([calibration.counts, calibration.correct, calibration.confidence_fp]),
                    "provider": model.provider,
                    "session_providers": ",".join(model.session.get_providers()),
                    "batch_size": size,
                    "actor": self._actor,
                }
            )
        except GateError as e:
            return _failure(plan, k, e, empty)
        except Exception as e:
            return _failure(plan, k, _unexpected("inference failed", e), empty)


# --------------------------------------------------------------------------- the driver


_ERRORS: dict[str, type[GateError]] = {}


def _error_class(kind: str) -> type[GateError]:
    if not _ERRORS:
        stack: list[type[GateError]] = [GateError]
        while stack:
            cls = stack.pop()
            _ERRORS[cls.kind] = cls
            stack.extend(cls.__subclasses__())
    return _ERRORS.get(kind, InternalError)


# Evaluations may be asked for on several threads of one process; they run one at a time
# (_RUNNING), sharing the process's Ray connection, and a cluster this module started stops
# when the evaluation that started it ends.
_LOCK = threading.Lock()
_RUNNING = threading.Lock()  # held while a pipeline runs (see evaluate_sharded)
_USERS = 0  # evaluations running on the connection below
_STARTED = False  # whether this module made the connection (and so ends it)
_REACHED = ""  # how: the address it was given, "local" for a cluster it started, else the GCS address
# Ray's driver prints the errors its cluster reports (a task failed, a worker died) on
# stdout, which belongs to `gate eval --format json`; while this module holds the
# connection, stdout is stderr.
_STDOUT: contextlib.AbstractContextManager[Any] | None = None
_SAVED: dict[str, Any] = {}  # Ray Data settings to restore when the last evaluation ends

_QUIET = {  # no progress bars or execution summaries from Ray Data on stderr
    "enable_progress_bars": False,
    "print_on_execution_start": False,
    "enable_auto_log_stats": False,
    "verbose_stats_logs": False,
}


def _init(ray: ModuleType, address: str | None) -> None:
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
    except Exception as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InternalError(f"cannot connect to {where}: {first}") from e


def _quiet(ray: ModuleType) -> None:
    with warnings.catch_warnings():
        # creating Ray Data's context warns about Ray's own deprecated defaults, not about gate's use
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    for name, value in _QUIET.items():
        if hasattr(ctx, name):
            _SAVED[name] = getattr(ctx, name)
            setattr(ctx, name, value)
    data_log = logging.getLogger("ray.data")
    _SAVED["ray.data log level"] = data_log.level
    data_log.setLevel(logging.ERROR)


def _unquiet(ray: ModuleType) -> None:
    level = _SAVED.pop("ray.data log level", None)
    if level is not None:
        logging.getLogger("ray.data").setLevel(level)
    ctx = ray.data.DataContext.get_current()
    for name, value in _SAVED.items():
        setattr(ctx, name, value)
    _SAVED.clear()


@contextlib.contextmanager
def _connected(address: str | None) -> Iterator[str]:
    """A connection to Ray: the one this process already has, the cluster at ``address``,
    or a local cluster started here (stopped when the last evaluation on it ends). Ray Data
    is kept quiet meanwhile. Yields the cluster's address, or ``local``."""
    global _USERS, _STARTED, _REACHED, _STDOUT
    ray = _ray()
    with _LOCK:
        if not ray.is_initialized():
            _STDOUT = contextlib.redirect_stdout(sys.stderr)
            _STDOUT.__enter__()
            try:
                _init(ray, address)
            except BaseException:
                _STDOUT.__exit__(None, None, None)
                _STDOUT = None
                raise
            _STARTED, _REACHED = True, address or "local"
        elif _USERS == 0 and not _STARTED:
            _REACHED = str(ray.get_runtime_context().gcs_address)
        if _USERS == 0:
            _quiet(ray)
        _USERS += 1
        reached = _REACHED
    try:
        yield reached
    finally:
        with _LOCK:
            _USERS -= 1
            if _USERS == 0:
                _unquiet(ray)
                if _STARTED:
                    _STARTED = False
                    try:
                        _wait_for_executors()
                        ray.shutdown()  # stops the thread that prints the cluster's errors
                    finally:
                        if _STDOUT is not None:
                            _STDOUT.__exit__(None, None, None)
                            _STDOUT = None


def _wait_for_executors(timeout_s: float = 30.0) -> None:
    """Let Ray Data's executor threads finish their teardown before the connection goes:
    one that touches the driver after ``ray.shutdown()`` makes Ray end the whole process
    (seen once in CI: `gate eval --engine ray` exited before printing its verdict)."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name.startswith("StreamingExecutor-") and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def _shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def _default_shard_size(n: int, sample_bytes: int, batch: int, actors: int) -> int:
    """About SHARDS_PER_ACTOR shards per actor, at most SHARD_BYTES each, in whole batches."""
    cap = max(1, SHARD_BYTES // max(1, sample_bytes))
    size = min(cap, max(1, math.ceil(n / (SHARDS_PER_ACTOR * actors))))
    if size >= batch:
        size -= size % batch  # the same batches as the local engine, shard by shard
    return size


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise RequestError(f"{name}={value!r} is not valid; it should be an integer >= 1")


def evaluate_sharded(
    model: bytes,
    dataset: Dataset,
    *,
    provider: str = "auto",
    batch_size: int | None = None,
    address: str | None = None,
    actors: int | None = None,
    shard_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    source: str = "<bytes>",
    decode: Decode = "auto",
) -> ShardedResult:
    """Run ``model`` over ``dataset`` in shards on a Ray cluster and reduce the results.

    ``address``: a Ray cluster to connect to (``auto``, ``ray://host:10001``, ...); None
    starts a local cluster for this call, with every CPU here, and stops it afterwards.
    A process already connected to Ray keeps its connection. ``actors``: inference
    actors (default: one per GPU when the cluster has GPUs and ``provider`` allows CUDA,
    else one per CPU). ``shard_size``: samples per shard (default: about
    :data:`SHARDS_PER_ACTOR` shards per actor, at most :data:`SHARD_BYTES` of model
    input each, in whole batches). ``progress(done, total)`` is called as shards
    finish; an exception it raises stops the evaluation. ``source`` names the model in
    messages. ``decode``: ``tasks`` decodes images in Ray Data tasks, ``actors`` in the
    inference actors; ``auto`` is ``tasks`` on GPU actors and ``actors`` on CPU actors.

    Raises a :class:`GateError` (ModelError, DatasetError, ProviderError, InternalError,
    RequestError) naming the shard and the sample when any shard fails.
    """
    if provider not in PROVIDERS:
        raise ProviderError(f"provider={provider!r} is not valid. It should be one of {', '.join(PROVIDERS)}.")
    for name, value in (("batch_size", batch_size), ("actors", actors), ("shard_size", shard_size)):
        _check_positive(name, value)
    if decode not in DECODE_MODES:
        raise RequestError(f"decode={decode!r} is not valid; it should be one of {', '.join(DECODE_MODES)}")
    if not model:
        raise RequestError("the model is empty")
    n = len(dataset)
    if n == 0:
        raise DatasetError(f"dataset '{dataset.name}' has no samples")
    ray = _ray()
    # One evaluation at a time per process: each sizes its actor pool for the whole
    # cluster, and two at once on one driver could hang (measured: a 2-CPU local cluster
    # shared by two threads hung in 3 runs of 4 until its control process went away).
    with _RUNNING, _connected(address) as reached:
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        gpus = int(resources.get("GPU", 0))
        on_gpu = provider != "cpu" and gpus > 0
        if provider == "cuda" and not on_gpu:
            raise ProviderError("provider 'cuda' requested, but the Ray cluster has no GPUs")
        images = dataset.pixel_source is not None
        mode: Decode = decode if decode != "auto" else "tasks" if on_gpu else "actors"
        if not images:
            mode = "actors"  # .npz shards are slices in the object store: nothing to decode
        # resources per actor, and how many fit in the cluster as it is now
        if on_gpu:
            actor_cpus, capacity = 1.0, gpus
        elif mode == "tasks":
            actor_cpus, capacity = 1.0, cpus - 1  # at least one CPU left to the decode tasks
        else:
            actor_cpus, capacity = 1.0, cpus
        if capacity < 1:
            raise RequestError(
                f"the Ray cluster has {cpus} CPU(s) and {gpus} GPU(s): not enough for"
                f" {'GPU actors' if on_gpu else 'CPU actors'}{' and decode tasks' if mode == 'tasks' else ''}"
            )
        wanted = actors or (capacity if on_gpu or mode == "actors" else max(1, cpus // 2))
        if not on_gpu and mode == "tasks" and wanted > capacity:
            # CPU actors holding every CPU would leave none to the decode tasks that feed them
            raise RequestError(
                f"actors={wanted} with decode='tasks' needs more than the cluster's {cpus} CPU(s):"
                " CPU actors and decode tasks share them; ask for fewer actors or decode='actors'"
            )
        if not on_gpu and mode == "actors" and actors is not None and actors < cpus:
            actor_cpus = float(cpus // actors)  # fewer actors than CPUs: each gets its share
            capacity = cpus // actors
        batch = batch_size or auto_batch_size(dataset.sample_shape)
        itemsize = 4 if images else _array_itemsize(dataset)  # images become float32
        sample_bytes = int(np.prod(dataset.sample_shape)) * itemsize
        size = shard_size or _default_shard_size(n, sample_bytes, batch, wanted)
        bounds = _shard_bounds(n, size)
        # no more actors than shards: an actor without a shard would only cost its start
        pool = max(1, min(wanted, len(bounds)))

        array_refs: list[Any] = []
        if not images:
            for part in dataset.batches(size):  # the local engine's own slices of the set
                array_refs.append(ray.put(part))
        plan = _Plan(
            source=source,
            classes=list(dataset.classes),
            labels=np.asarray(dataset.labels, dtype=np.int64),
            sample_ids=list(dataset.sample_ids),
            sample_shape=tuple(dataset.sample_shape),
            shards=bounds,
            pixels=dataset.pixel_source,
            preprocess=dataset.spec.preprocess if images else None,
            arrays=array_refs,
        )
        plan_ref = ray.put(plan)
        model_ref = ray.put(model)
        run_provider: Provider = provider if on_gpu else "cpu"

        pipeline = ray.data.from_items([{"shard": k} for k in range(len(bounds))], override_num_blocks=len(bounds))
        if mode == "tasks":
            pipeline = pipeline.map_batches(_decode_stage, batch_size=1, num_cpus=1, fn_kwargs={"plan": [plan_ref]})
        with warnings.catch_warnings():
            # Ray Data restarts dead actors and retries their shards without end unless told
            # otherwise, so a worker that dies on every try (a crash on some input) would
            # never end the evaluation. The only way to bound it in this Ray is a remote
            # argument that Ray Data has marked deprecated (for Ray 2.64).
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
            pipeline = pipeline.map_batches(
                _ShardWorker,
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(min_size=max(1, min(pool, capacity)), max_size=pool),
                num_cpus=actor_cpus,
                num_gpus=1 if on_gpu else None,
                fn_constructor_kwargs={
                    "plan": [plan_ref],
                    "model": [model_ref],
                    "provider": run_provider,
                    "batch_size": batch_size,
                    "threads": max(1, int(actor_cpus)),
                },
                max_restarts=WORKER_RETRIES,
                max_task_retries=WORKER_RETRIES,
            )
        result = _reduce(plan, pipeline, progress)
        runtime = {
            "engine": "ray",
            "ray": ray.__version__,
            "address": reached,
            "cluster": {"CPU": cpus, "GPU": gpus},
            "shards": len(bounds),
            "shard_size": size,
            "actors": len(result.actors),
            "max_actors": pool,
            "decode": mode,
            **result.runtime,
        }
        return ShardedResult(result.predictions, result.confusion, result.calibration, runtime)


def _array_itemsize(dataset: Dataset) -> int:
    first = next(dataset.batches(1))
    return int(first.dtype.itemsize)


@dataclass
class _Reduced:
    predictions: Predictions
    confusion: npt.NDArray[np.int64]
    calibration: Calibration
    actors: set[str]
    runtime: dict[str, Any]


def _reduce(plan: _Plan, pipeline: Any, progress: Callable[[int, int], None] | None) -> _Reduced:
    """Collect the shards as they finish: check coverage, sum, merge, gather; stop at the first failure."""
    n = len(plan.labels)
    k_classes = len(plan.classes)
    labels = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    confidence = np.empty(n, dtype=np.float32)
    confusion = np.zeros((k_classes, k_classes), dtype=np.int64)
    calibration = Calibration.empty()
    seen: set[int] = set()
    actors: set[str] = set()
    providers: set[str] = set()
    session_providers: set[str] = set()
    batch_sizes: set[int] = set()
    done = 0
    rows = iter(pipeline.iter_rows())
    try:
        while True:
            try:
                row = next(rows, None)
            except Exception as e:  # Ray itself failed: a worker or node died, the object store...
                pending = [plan.where(k) for k in range(len(plan.shards)) if k not in seen]
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                shown = "; ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
                raise InternalError(
                    f"the Ray evaluation failed with {len(pending)} shard(s) unfinished ({shown}):"
                    f" {type(e).__name__}: {first}"
                ) from e
            if row is None:
                break
            k = int(row["shard"])
            if str(row["error_type"]):
                raise _error_class(str(row["error_type"]))(str(row["error_message"]))
            if k in seen or not 0 <= k < len(plan.shards):
                raise InternalError(f"shard {k + 1} was reported twice or does not exist; the results are refused")
            start, stop = plan.shards[k]
            got = np.asarray(row["labels"])
            if got.shape != (stop - start,):
                raise InternalError(f"{plan.where(k)} answered {got.shape} labels for {stop - start} samples")
            seen.add(k)
            labels[start:stop] = got
            scores[start:stop] = row["scores"]
            confidence[start:stop] = row["confidence"]
            confusion += np.asarray(row["confusion"], dtype=np.int64)
            bins = np.asarray(row["calibration"], dtype=np.int64)
            calibration = calibration.merge(Calibration(bins[0], bins[1], bins[2]))
            actors.add(str(row["actor"]))
            providers.add(str(row["provider"]))
            session_providers.add(str(row["session_providers"]))
            batch_sizes.add(int(row["batch_size"]))
            done += stop - start
            if progress is not None:
                progress(done, n)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    missing = [plan.where(k) for k in range(len(plan.shards)) if k not in seen]
    if missing:
        raise InternalError(f"the Ray evaluation ended without {len(missing)} shard(s): {'; '.join(missing[:3])}")
    # every shard was seen once and the shards partition [0, n): each sample exactly once
    if int(confusion.sum()) != n or calibration.samples != n:
        raise InternalError(
            f"the shards' counts add up to {int(confusion.sum())} (confusion) and {calibration.samples}"
            f" (calibration), not the {n} samples of the set"
        )
    runtime: dict[str, Any] = {
        "provider": _one(providers),
        "session_providers": _one(session_providers).split(","),
        "batch_size": batch_sizes.pop() if len(batch_sizes) == 1 else sorted(batch_sizes),
    }
    if CUDA in providers and CPU in providers:
        runtime["note"] = "some actors could not initialise CUDA and ran on the CPU"
    return _Reduced(Predictions(labels, scores, confidence), confusion, calibration, actors, runtime)


def _one(values: set[str]) -> str:
    """The single value, or the distinct values joined when actors disagreed."""
    return ", ".join(sorted(values))
