"""Inference in worker processes, so that a model cannot take the server down with it.

ONNX Runtime runs native code on untrusted models: a model can crash it, exhaust memory
or never finish. Each running evaluation therefore gets a worker process of its own (a
pool of ``max_concurrent_evaluations`` long-lived processes, started with ``spawn``),
which loads the model, runs :func:`gate.evaluation.evaluate` and streams its progress and
verdict back over a pipe. The server only waits, with a deadline:

* a worker that dies (a crash in native code, the kernel's OOM killer, the memory limit)
  ends its evaluation as ERROR, and a fresh worker takes its place;
* an evaluation past its time limit, or whose client went away, is stopped by killing its
  worker: the work really stops, even inside a model that never returns;
* workers die with the server (``PR_SET_PDEATHSIG`` on Linux, and end of file on the
  pipe everywhere), so a killed server leaves no orphans behind.

Each worker keeps its own session cache, and shares the on-disk tensor, result and
digest caches.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import queue
import resource
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gate import errors
from gate.errors import GateError, InternalError, ModelError

if TYPE_CHECKING:
    from gate.verdict import Verdict

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSettings:
    cache_dir: Path
    threads: int  # intra-op threads per session
    memory_limit: int | None  # bytes of address space a worker may use; None: no limit
    log_level: int
    log_format: Literal["text", "json"]
    engine: Literal["local", "ray"] = "local"  # ray: the worker drives a sharded evaluation
    ray_address: str | None = None


@dataclass(frozen=True)
class ModelFile:
    """A stored model as the worker receives it: its path in the model store and the
    SHA-256 it was stored under. Never its bytes: a model may be 2 GiB, and the worker
    reads it from disk itself, verifying it against ``sha256`` as it does."""

    path: str
    sha256: str


# -- what the server sends --------------------------------------------------------------


@dataclass(frozen=True)
class LoadJob:
    """Load the model (create its session) before the evaluation is accepted."""

    model: ModelFile
    provider: str
    model_name: str


@dataclass(frozen=True)
class EvaluateJob:
    evaluation_id: str
    model: ModelFile
    dataset_spec: str  # the registered dataset's spec (or source) path
    dataset_sha256: str  # what the server registered: the worker refuses anything else
    policy_yaml: str
    policy_source: str
    provider: str
    batch_size: int | None
    model_name: str | None
    labels: dict[str, Any] = field(default_factory=dict)
    baseline: ModelFile | None = None  # the champion model, for `baseline` rules
    baseline_name: str | None = None
    fingerprint: bytes | None = None  # a training fingerprint file, for `leakage` rules
    # the reference models of `provider_parity` rules, by the name the rules give them
    references: dict[str, ModelFile] = field(default_factory=dict)


# -- what the worker answers ------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The worker has started (its imports are done)."""


@dataclass(frozen=True)
class Loaded:
    """The LoadJob's model loaded."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class Done:
    """The evaluation ended with this verdict (a ``Verdict.to_dict`` document)."""

    verdict: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """The job failed before an evaluation could judge: an error of kind ``kind``."""

    kind: str
    message: str

    def error(self) -> GateError:
        return GateError.from_kind(self.kind, self.message)


Reply = Ready | Loaded | Progress | Done | Failed


# -- the worker process ---------------------------------------------------------------


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _read(model: ModelFile) -> bytes:
    try:
        return Path(model.path).read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the stored model {model.sha256}: {e.strerror}") from e


class _WorkerState:
    """What a worker keeps between jobs: its caches, the datasets it has loaded, and the
    bytes its last LoadJob read, for the EvaluateJob that follows.

    A model is hashed once per evaluation, by :func:`gate.evaluation.evaluate`, over the
    very bytes the LoadJob loaded. Until then the session the LoadJob cached under the
    model's SHA-256 is unconfirmed: when the evaluation does not confirm that SHA-256 (a
    file changed or damaged on disk, or a job that failed before it was hashed), the
    worker forgets its sessions rather than keep one that may not be that model.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        from gate.cache import Caches
        from gate.datasets import Dataset

        self.settings = settings
        self.caches = Caches.at(settings.cache_dir, threads=settings.threads)
        self.datasets: dict[str, Dataset] = {}
        self.loaded: tuple[ModelFile, bytes] | None = None

    def load(self, job: LoadJob) -> Loaded:
        data = _read(job.model)
        assert self.caches.sessions is not None
        self.loaded = (job.model, data)
        self.caches.sessions.get(
            data,
            provider=job.provider,  # type: ignore[arg-type]
            source=job.model_name,
            sha256=job.model.sha256,
        )
        return Loaded()

    def _forget_sessions(self) -> None:
        from gate.inference import SessionCache

        old = self.caches.sessions
        if old is not None:
            self.caches.sessions = SessionCache(old.capacity, threads=old.threads)

    def _model(self, model: ModelFile) -> bytes:
        kept, self.loaded = self.loaded, None
        return kept[1] if kept is not None and kept[0] == model else _read(model)

    def dataset(self, job: EvaluateJob) -> Any:
        from gate.datasets import load_dataset

        ds = self.datasets.get(job.dataset_spec)
        if ds is None or ds.sha256 != job.dataset_sha256:
            ds = load_dataset(job.dataset_spec, digest_cache=self.caches.digests)
            self.datasets[job.dataset_spec] = ds
        if ds.sha256 != job.dataset_sha256:
            raise errors.DatasetError(
                f"dataset '{ds.name}' changed on disk since the server loaded it (sha256 {job.dataset_sha256[:12]}"
                f" then, {ds.sha256[:12]} now); reload the server's datasets"
            )
        return ds

    def evaluate(self, job: EvaluateJob, send: Callable[[Reply], None]) -> Done:
        confirmed = False
        try:
            verdict = self._evaluate(job, send)
            confirmed = verdict.model.get("sha256") == job.model.sha256
            return Done(verdict.to_dict())
        finally:
            if not confirmed:
                self._forget_sessions()

    def _evaluate(self, job: EvaluateJob, send: Callable[[Reply], None]) -> Verdict:
        from gate.deployment.steps import PinnedModel
        from gate.evaluation import evaluate
        from gate.policy import parse_policy

        data = self._model(job.model)
        return evaluate(
            data,
            self.dataset(job),
            parse_policy(job.policy_yaml, source=job.policy_source),
            provider=job.provider,  # type: ignore[arg-type]
            batch_size=job.batch_size,
            progress=lambda done, total: send(Progress(done, total)),
            model_name=job.model_name,
            model_sha256=job.model.sha256,
            caches=self.caches,
            baseline=None if job.baseline is None else job.baseline.path,
            baseline_sha256=None if job.baseline is None else job.baseline.sha256,
            baseline_name=job.baseline_name,
            fingerprint=job.fingerprint,
            references={name: PinnedModel(f.path, f.sha256) for name, f in job.references.items()},
            engine=self.settings.engine,
            ray_address=self.settings.ray_address,
        )


def _answer(state: _WorkerState, job: LoadJob | EvaluateJob, send: Callable[[Reply], None]) -> Reply:
    from gate.logs import EVALUATION_ID

    try:
        if isinstance(job, LoadJob):
            return state.load(job)
        EVALUATION_ID.set(job.evaluation_id)
        return state.evaluate(job, send)
    except GateError as e:
        return Failed(e.kind, e.message)
    except (BrokenPipeError, EOFError):
        raise
    except Exception as e:  # reported, then the worker carries on with the next job
        log.exception("worker job failed")
        return Failed(InternalError.kind, f"internal error: {type(e).__name__}: {e}")
    finally:
        EVALUATION_ID.set(None)


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """The worker's loop: one job at a time, answers on ``conn``, until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    # a Ray driver maps the cluster's shared object store: the address-space limit is for
    # workers that run the model themselves
    if settings.memory_limit and settings.engine == "local":
        resource.setrlimit(resource.RLIMIT_AS, (settings.memory_limit, settings.memory_limit))
    from gate.logs import configure as configure_logging

    configure_logging(settings.log_level, settings.log_format)
    state = _WorkerState(settings)
    try:
        conn.send(Ready())  # start-up (imports) is not counted against any evaluation
        while True:
            job = conn.recv()
            conn.send(_answer(state, job, conn.send))
    except (BrokenPipeError, EOFError, OSError):
        return


# -- the server side ------------------------------------------------------------------


class WorkerDiedError(InternalError):
    """The worker process running an evaluation died."""


def _death(process: BaseProcess) -> str:
    process.join(timeout=1)
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


STARTUP_TIMEOUT_S = 120.0


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, settings), name="gate-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.bytes_sent = 0  # the size of every job sent: jobs name models, they never carry them

    def wait_ready(self) -> None:
        """Block until the worker has started (its imports done)."""
        if not self.ready:
            if not isinstance(self.receive(STARTUP_TIMEOUT_S), Ready):
                raise WorkerDiedError(f"the worker process did not start within {STARTUP_TIMEOUT_S:g} s")
            self.ready = True

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, job: LoadJob | EvaluateJob) -> None:
        message = bytes(ForkingPickler.dumps(job))
        try:
            self.conn.send_bytes(message)
        except (BrokenPipeError, OSError) as e:
            raise WorkerDiedError(f"the worker process {_death(self.process)}") from e
        self.bytes_sent += len(message)

    def receive(self, timeout: float) -> Reply | None:
        """The next reply, None after ``timeout``; WorkerDiedError when the worker died."""
        try:
            if not self.conn.poll(timeout):
                return None
            reply: Reply = self.conn.recv()
            return reply
        except (EOFError, OSError) as e:
            raise WorkerDiedError(f"the worker process {_death(self.process)}") from e

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.is_alive():
                os.kill(self.process.pid or 0, signal.SIGKILL)
        self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """``size`` workers; admission control guarantees no more are asked for at once."""

    def __init__(self, size: int, settings: WorkerSettings) -> None:
        self.size = size
        self.settings = settings
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._all: set[Worker] = set()
        self._closed = False
        self._retired_bytes_sent = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bytes_sent(self) -> int:
        """Bytes of jobs sent to workers so far, those since replaced included."""
        with self._lock:
            return self._retired_bytes_sent + sum(w.bytes_sent for w in self._all)

    @contextlib.contextmanager
    def lease(self) -> Iterator[Worker]:
        """A worker for the block: back to the pool when the block ends normally; killed
        and replaced when it raises (or is closed early), since it may be mid-job, stuck
        inside a model, or dead."""
        worker = self.take()
        try:
            yield worker
        except BaseException:
            self.replace(worker)
            raise
        self.give_back(worker)

    def _add(self) -> None:
        worker = Worker(self.settings)
        with self._lock:
            self._all.add(worker)
        self._idle.put(worker)

    def prewarm(self) -> None:
        """Start every worker now rather than on first use (they take a second to start)."""
        while True:
            with self._lock:
                if len(self._all) >= self.size or self._closed:
                    return
            self._add()

    def take(self) -> Worker:
        """An idle worker, started if need be (its start-up is not any evaluation's time)."""
        if self._closed:
            raise InternalError("the server is stopping")
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = len(self._all) < self.size
            if grow:
                self._add()
            worker = self._idle.get()
        try:
            worker.wait_ready()
        except WorkerDiedError:
            self.replace(worker)
            raise
        return worker

    def give_back(self, worker: Worker) -> None:
        self._idle.put(worker)

    def replace(self, worker: Worker) -> None:
        """Kill ``worker`` (it may be stuck inside a model) and put a fresh one in its place."""
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.discard(worker)
                self._retired_bytes_sent += worker.bytes_sent
        if not self._closed:
            self._add()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.kill()


def load_in(worker: Worker, job: LoadJob, timeout: float) -> GateError | None:
    """Load the model in ``worker`` (creating its session) within ``timeout`` seconds.
    Returns the error the worker reported (it stays usable); raises EvaluationTimeoutError
    past ``timeout`` and ModelError when the model crashed the worker."""
    try:
        worker.send(job)
        reply = worker.receive(timeout)
    except WorkerDiedError as e:
        raise model_crash(e) from e
    if reply is None:
        raise errors.EvaluationTimeoutError(f"loading the model took longer than {timeout:g} s")
    if isinstance(reply, Failed):
        return reply.error()
    if not isinstance(reply, Loaded):
        raise InternalError(f"the worker answered a LoadJob with {type(reply).__name__}")
    return None


def model_crash(error: WorkerDiedError) -> ModelError:
    return ModelError(
        f"the model crashed the worker process that loaded it ({error.message.removeprefix('the worker process ')})"
    )
