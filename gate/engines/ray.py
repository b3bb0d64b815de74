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
   or Inf, one row per sample, the class count), the confidences and the top classes
   are the local engine's. It answers with the shard's rows of the predictions table.

Where it runs: on a cluster with GPUs (and ``provider`` ``auto`` or ``cuda``) there is one
actor per GPU (``num_gpus=1``) and decoding runs in separate CPU tasks, as many as the
CPUs allow, which feed them. On a CPU-only cluster the actors decode their own shards
(``decode="actors"``): every CPU does both, and no shard's tensors are copied through
the object store; ``decode="tasks"`` asks for separate decode tasks there too.

The driver checks that every sample is covered by exactly one shard and concatenates
the shards' rows in dataset order into the same predictions table
(:mod:`gate.predictions`) the local engine gives; the metrics come from that table. A
failure in any shard (a model that emits NaN, an image that does not decode, a worker
that died) raises a :class:`GateError` naming the shard and the sample; a partial result
is never returned.

Image files are read by their absolute paths on whichever node decodes them: on a
multi-node cluster the held-out set must be mounted at the same path on every node.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from gate.datasets import Dataset, Preprocess
from gate.datasets import images as _images
from gate.engines.base import EngineResult, ModelInput, RunOptions, prediction_table
from gate.engines.ray_connection import RUNNING, connected, ray_installed, ray_module
from gate.errors import DatasetError, GateError, InternalError, ModelError, ProviderError, RequestError
from gate.inference import LoadedModel, Predictions, auto_batch_size, check_compatible, load_model, predict
from gate.predictions import TOP_K, PredictionTable
from gate.providers import CPU, CUDA, PROVIDERS, Provider

if TYPE_CHECKING:
    from types import ModuleType


log = logging.getLogger(__name__)

__all__ = ["SHARD_BYTES", "Decode", "RayEngine", "ShardedResult", "evaluate_sharded", "ray_installed"]

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

# --------------------------------------------------------------------------- result


@dataclass
class ShardedResult:
    """What the shards computed, gathered on the driver."""

    table: PredictionTable  # per sample, in dataset order (the shards' rows concatenated)
    runtime: dict[str, Any]  # engine "ray", ray version, address, shards, actors, provider that ran, batch size


class RayEngine:
    """The :class:`~gate.engines.base.InferenceEngine` that shards inference over a Ray
    cluster (``address``, or a local one started for each evaluation)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def run(self, model: ModelInput, dataset: Dataset, options: RunOptions) -> EngineResult:
        sharded = evaluate_sharded(
            model.data,
            dataset,
            provider=options.provider,
            batch_size=options.batch_size,
            address=self.address,
            progress=options.progress,
            source=model.source,
            sha256=model.sha256,
        )
        from gate.inference import runtime_versions

        return EngineResult(
            sharded.table, {**runtime_versions(), "requested_provider": options.provider, **sharded.runtime}
        )


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs to know about the evaluation; put in the object store once."""

    source: str  # how messages name the model
    sha256: str  # the model's, computed once by the caller
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
        plan = ray_module().get(ref)
        _PLANS.clear()  # one evaluation at a time per worker: keep only the current plan
        _PLANS[key] = plan
    return plan


#: Images decoded before they are normalised together (bounds the 8-bit staging array).
_DECODE_CHUNK = 64


def _shard_input(plan: _Plan, k: int) -> npt.NDArray[Any]:
    """Shard ``k``'s model input, ``(n, *sample_shape)``: images decoded and normalised by
    the dataset's own code, or the .npz slice the driver put in the object store."""
    if plan.pixels is None:
        x: npt.NDArray[Any] = ray_module().get(plan.arrays[k])
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
        ray = ray_module()
        self._plan = _plan(plan[0])
        self._batch_size = batch_size
        context = ray.get_runtime_context()
        self._actor = str(context.get_actor_id() or os.getpid())
        self._model: LoadedModel | None = None
        self._error: GateError | None = None
        try:
            self._model = load_model(
                ray.get(model[0]),
                provider=provider,
                source=self._plan.source,
                threads=threads,
                sha256=self._plan.sha256,
            )
            check_compatible(self._model, self._plan.classes, self._plan.sample_shape)
        except GateError as e:
            self._error = e
        except Exception as e:
            self._error = _unexpected("the model could not be loaded on a Ray worker", e)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        plan = self._plan
        k = int(batch["shard"][0])
        top = min(TOP_K, len(plan.classes))
        empty = {
            "labels": np.zeros(0, dtype=np.int64),
            "confidence": np.zeros(0, dtype=np.float32),
            "top_classes": np.zeros((0, top), dtype=np.int64),
            "top_scores": np.zeros((0, top), dtype=np.float32),
            "label_scores": np.zeros(0, dtype=np.float32),
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
        try:
            return self._infer(k, batch)
        except GateError as e:
            return _failure(plan, k, e, empty)
        except Exception as e:
            return _failure(plan, k, _unexpected("inference failed", e), empty)

    def _infer(self, k: int, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        plan, model = self._plan, self._model
        assert model is not None
        x = batch["x"][0] if "x" in batch else _shard_input(plan, k)
        start, stop = plan.shards[k]
        size = model.fixed_batch or self._batch_size or auto_batch_size(plan.sample_shape)
        preds = predict(
            model,
            _model_batches(x, size),
            n_classes=len(plan.classes),
            total=stop - start,
            sample_ids=plan.sample_ids[start:stop],
            labels=np.asarray(plan.labels[start:stop], dtype=np.int64),
        )
        return _row(
            {
                "shard": k,
                "error_type": "",
                "error_message": "",
                "labels": preds.labels,
                "confidence": preds.confidence,
                "top_classes": preds.top_classes,
                "top_scores": preds.top_scores,
                "label_scores": preds.label_scores,
                "provider": model.provider,
                "session_providers": ",".join(model.session.get_providers()),
                "batch_size": size,
                "actor": self._actor,
            }
        )


# --------------------------------------------------------------------------- the driver


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
    sha256: str | None = None,
) -> ShardedResult:
    """Run ``model`` over ``dataset`` in shards on a Ray cluster and gather the table.

    ``address``: a Ray cluster to connect to (``auto``, ``ray://host:10001``, ...); None
    starts a local cluster for this call, with every CPU here, and stops it afterwards.
    A process already connected to Ray keeps its connection. ``actors``: inference
    actors (default: one per GPU when the cluster has GPUs and ``provider`` allows CUDA,
    else one per CPU). ``shard_size``: samples per shard (default: about
    :data:`SHARDS_PER_ACTOR` shards per actor, at most :data:`SHARD_BYTES` of model
    input each, in whole batches). ``progress(done, total)`` is called as shards
    finish; an exception it raises stops the evaluation. ``source`` names the model in
    messages; ``sha256`` is the model's, when the caller has it. ``decode``: ``tasks``
    decodes images in Ray Data tasks, ``actors`` in the inference actors; ``auto`` is
    ``tasks`` on GPU actors and ``actors`` on CPU actors.

    Raises a :class:`GateError` (ModelError, DatasetError, ProviderError, InternalError,
    RequestError) naming the shard and the sample when any shard fails.
    """
    _check_request(model, dataset, provider, decode, batch_size=batch_size, actors=actors, shard_size=shard_size)
    ray = ray_module()
    # One evaluation at a time per process: each sizes its actor pool for the whole
    # cluster, and two at once on one driver could hang (measured: a 2-CPU local cluster
    # shared by two threads hung in 3 runs of 4 until its control process went away).
    with RUNNING, connected(address) as reached:
        layout = _lay_out(ray, dataset, provider, decode, batch_size=batch_size, actors=actors, shard_size=shard_size)
        digest = sha256 if sha256 is not None else hashlib.sha256(model).hexdigest()
        plan = _make_plan(ray, dataset, layout, source, digest)
        # held by the driver until every shard is in
        plan_ref, model_ref = ray.put(plan), ray.put(model)
        pipeline = _pipeline(ray, plan_ref, model_ref, layout, batch_size)
        result = _reduce(plan, pipeline, progress)
        del plan_ref, model_ref
        runtime = {
            "engine": "ray",
            "ray": ray.__version__,
            "address": reached,
            "cluster": {"CPU": layout.cpus, "GPU": layout.gpus},
            "shards": len(layout.bounds),
            "shard_size": layout.shard_size,
            "actors": len(result.actors),
            "max_actors": layout.pool,
            "decode": layout.mode,
            **result.runtime,
        }
        table = prediction_table(dataset, result.predictions)
        return ShardedResult(table, runtime)


def _check_request(model: bytes, dataset: Dataset, provider: str, decode: str, **sizes: int | None) -> None:
    if provider not in PROVIDERS:
        raise ProviderError(f"provider={provider!r} is not valid. It should be one of {', '.join(PROVIDERS)}.")
    for name, value in sizes.items():
        _check_positive(name, value)
    if decode not in DECODE_MODES:
        raise RequestError(f"decode={decode!r} is not valid; it should be one of {', '.join(DECODE_MODES)}")
    if not model:
        raise RequestError("the model is empty")
    if len(dataset) == 0:
        raise DatasetError(f"dataset '{dataset.name}' has no samples")


@dataclass(frozen=True)
class _Layout:
    """Where the evaluation runs: the cluster's resources, the actors and the shards."""

    cpus: int
    gpus: int
    on_gpu: bool
    mode: Decode  # tasks or actors
    provider: Provider  # what the actors ask for: the request's on GPUs, else cpu
    actor_cpus: float  # CPUs per inference actor
    capacity: int  # actors that fit in the cluster now
    pool: int  # most actors to start
    shard_size: int
    bounds: list[tuple[int, int]]


def _lay_out(
    ray: ModuleType,
    dataset: Dataset,
    provider: str,
    decode: Decode,
    *,
    batch_size: int | None,
    actors: int | None,
    shard_size: int | None,
) -> _Layout:
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    on_gpu = provider != "cpu" and gpus > 0
    if provider == "cuda" and not on_gpu:
        raise ProviderError("provider 'cuda' requested, but the Ray cluster has no GPUs")
    images = dataset.pixel_source is not None
    mode: Decode = decode if decode != "auto" else "tasks" if on_gpu else "actors"
    if not images:
        mode = "actors"  # .npz shards are slices in the object store: nothing to decode
    # resources per actor, and how many fit in the cluster as it is now
    actor_cpus = 1.0
    capacity = gpus if on_gpu else cpus - 1 if mode == "tasks" else cpus  # tasks: one CPU left to decoding
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
    size = shard_size or _default_shard_size(len(dataset), sample_bytes, batch, wanted)
    bounds = _shard_bounds(len(dataset), size)
    # no more actors than shards: an actor without a shard would only cost its start
    pool = max(1, min(wanted, len(bounds)))
    run_provider: Provider = provider if on_gpu else "cpu"  # type: ignore[assignment]
    return _Layout(cpus, gpus, on_gpu, mode, run_provider, actor_cpus, capacity, pool, size, bounds)


def _make_plan(ray: ModuleType, dataset: Dataset, layout: _Layout, source: str, sha256: str) -> _Plan:
    images = dataset.pixel_source is not None
    # .npz: the local engine's own slices of the set, each put in the object store
    array_refs = [] if images else [ray.put(part) for part in dataset.batches(layout.shard_size)]
    return _Plan(
        source=source,
        sha256=sha256,
        classes=list(dataset.classes),
        labels=np.asarray(dataset.labels, dtype=np.int64),
        sample_ids=list(dataset.sample_ids),
        sample_shape=tuple(dataset.sample_shape),
        shards=layout.bounds,
        pixels=dataset.pixel_source,
        preprocess=dataset.spec.preprocess if images else None,
        arrays=array_refs,
    )


def _pipeline(ray: ModuleType, plan_ref: Any, model_ref: Any, layout: _Layout, batch_size: int | None) -> Any:
    """The Ray Data pipeline: shard descriptors, decode tasks (when asked), inference actors."""
    shards = len(layout.bounds)
    pipeline = ray.data.from_items([{"shard": k} for k in range(shards)], override_num_blocks=shards)
    if layout.mode == "tasks":
        pipeline = pipeline.map_batches(_decode_stage, batch_size=1, num_cpus=1, fn_kwargs={"plan": [plan_ref]})
    run_provider: Provider = layout.provider
    with warnings.catch_warnings():
        # Ray Data restarts dead actors and retries their shards without end unless told
        # otherwise, so a worker that dies on every try (a crash on some input) would
        # never end the evaluation. The only way to bound it in this Ray is a remote
        # argument that Ray Data has marked deprecated (for Ray 2.64).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        return pipeline.map_batches(
            _ShardWorker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(
                min_size=max(1, min(layout.pool, layout.capacity)), max_size=layout.pool
            ),
            num_cpus=layout.actor_cpus,
            num_gpus=1 if layout.on_gpu else None,
            fn_constructor_kwargs={
                "plan": [plan_ref],
                "model": [model_ref],
                "provider": run_provider,
                "batch_size": batch_size,
                "threads": max(1, int(layout.actor_cpus)),
            },
            max_restarts=WORKER_RETRIES,
            max_task_retries=WORKER_RETRIES,
        )


def _array_itemsize(dataset: Dataset) -> int:
    first = next(dataset.batches(1))
    return int(first.dtype.itemsize)


@dataclass
class _Reduced:
    predictions: Predictions
    actors: set[str]
    runtime: dict[str, Any]


@dataclass
class _Gathered:
    """The shards' rows as they arrive, and what the actors said about themselves."""

    predictions: Predictions
    seen: set[int] = field(default_factory=set)
    facts: dict[str, set[Any]] = field(
        default_factory=lambda: {"actor": set(), "provider": set(), "session_providers": set(), "batch_size": set()}
    )

    def add(self, plan: _Plan, row: dict[str, Any]) -> int:
        """Take one shard's row; the number of samples it covered."""
        k = int(row["shard"])
        if k in self.seen or not 0 <= k < len(plan.shards):
            raise InternalError(f"shard {k + 1} was reported twice or does not exist; the results are refused")
        start, stop = plan.shards[k]
        got = np.asarray(row["labels"])
        if got.shape != (stop - start,):
            raise InternalError(f"{plan.where(k)} answered {got.shape} labels for {stop - start} samples")
        self.seen.add(k)
        p = self.predictions
        p.labels[start:stop] = got
        p.confidence[start:stop] = row["confidence"]
        p.top_classes[start:stop] = row["top_classes"]
        p.top_scores[start:stop] = row["top_scores"]
        if p.label_scores is not None:
            p.label_scores[start:stop] = row["label_scores"]
        for name, values in self.facts.items():
            values.add(int(row[name]) if name == "batch_size" else str(row[name]))
        return stop - start


def _reduce(plan: _Plan, pipeline: Any, progress: Callable[[int, int], None] | None) -> _Reduced:
    """Collect the shards as they finish: check coverage, gather in order; stop at the first failure."""
    n = len(plan.labels)
    top = min(TOP_K, len(plan.classes))
    gathered = _Gathered(
        Predictions(
            labels=np.empty(n, dtype=np.int64),
            confidence=np.empty(n, dtype=np.float32),
            top_classes=np.empty((n, top), dtype=np.int64),
            top_scores=np.empty((n, top), dtype=np.float32),
            label_scores=np.empty(n, dtype=np.float32),
        )
    )
    done = 0
    rows = iter(pipeline.iter_rows())
    try:
        while (row := _next_row(plan, rows, gathered.seen)) is not None:
            if str(row["error_type"]):
                raise GateError.from_kind(str(row["error_type"]), str(row["error_message"]))
            done += gathered.add(plan, row)
            if progress is not None:
                progress(done, n)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    missing = [plan.where(k) for k in range(len(plan.shards)) if k not in gathered.seen]
    if missing:
        raise InternalError(f"the Ray evaluation ended without {len(missing)} shard(s): {'; '.join(missing[:3])}")
    # every shard was seen once and the shards partition [0, n): each sample exactly once
    facts = gathered.facts
    batch_sizes = facts["batch_size"]
    runtime: dict[str, Any] = {
        "provider": _one(facts["provider"]),
        "session_providers": _one(facts["session_providers"]).split(","),
        "batch_size": next(iter(batch_sizes)) if len(batch_sizes) == 1 else sorted(batch_sizes),
    }
    if CUDA in facts["provider"] and CPU in facts["provider"]:
        runtime["note"] = "some actors could not initialise CUDA and ran on the CPU"
    return _Reduced(gathered.predictions, facts["actor"], runtime)


def _next_row(plan: _Plan, rows: Iterator[Any], seen: set[int]) -> Any:
    """The next finished shard's row, or None at the end; Ray's own failures (a worker or
    node died, the object store...) as an InternalError naming the unfinished shards."""
    try:
        return next(rows, None)
    except Exception as e:
        pending = [plan.where(k) for k in range(len(plan.shards)) if k not in seen]
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        shown = "; ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
        raise InternalError(
            f"the Ray evaluation failed with {len(pending)} shard(s) unfinished ({shown}): {type(e).__name__}: {first}"
        ) from e


def _one(values: set[str]) -> str:
    """The single value, or the distinct values joined when actors disagreed."""
    return ", ".join(sorted(values))
