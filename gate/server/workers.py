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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

from gate import errors
from gate.errors import GateError, InternalError, ModelError

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
class LoadJob:
    model: bytes
    provider: str
    model_name: str


@dataclass(frozen=True)
class EvaluateJob:
    evaluation_id: str
    model: bytes
    dataset_spec: str  # the registered dataset's spec (or source) path
    dataset_sha256: str  # what the server registered: the worker refuses anything else
    policy_yaml: str
    policy_source: str
    provider: str
    batch_size: int | None
    model_name: str | None
    labels: dict[str, Any] = field(default_factory=dict)
    baseline: bytes | None = None  # the champion model, for `baseline` rules
    baseline_name: str | None = None
    fingerprint: bytes | None = None  # a training fingerprint file, for `leakage` rules


def error_from(kind: str, message: str) -> GateError:
    """Rebuild a GateError of the named kind (InternalError when the kind is unknown)."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, GateError) and cls is not GateError:
        try:
            return cls(message)
        except TypeError:
            pass
    return InternalError(message)


# -- the worker process ---------------------------------------------------------------


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """The worker's loop: one job at a time, answers on ``conn``, until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    # a Ray driver maps the cluster's shared object store: the address-space limit is for
    # workers that run the model themselves
    if settings.memory_limit and settings.engine == "local":
        resource.setrlimit(resource.RLIMIT_AS, (settings.memory_limit, settings.memory_limit))
    from gate.cache import Caches
    from gate.datasets import Dataset, load_dataset
    from gate.evaluation import evaluate
    from gate.logs import EVALUATION_ID
    from gate.logs import configure as configure_logging
    from gate.policy import parse_policy

    configure_logging(settings.log_level, settings.log_format)
    caches = Caches.at(settings.cache_dir, threads=settings.threads)
    datasets: dict[str, Dataset] = {}
    try:
        conn.send(("ready",))  # start-up (imports) is not counted against any evaluation
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if isinstance(job, LoadJob):
                assert caches.sessions is not None
                caches.sessions.get(job.model, provider=job.provider, source=job.model_name)  # type: ignore[arg-type]
                conn.send(("loaded",))
                continue
            EVALUATION_ID.set(job.evaluation_id)
            ds = datasets.get(job.dataset_spec)
            if ds is None or ds.sha256 != job.dataset_sha256:
                ds = load_dataset(job.dataset_spec, digest_cache=caches.digests)
                datasets[job.dataset_spec] = ds
            if ds.sha256 != job.dataset_sha256:
                raise errors.DatasetError(
                    f"dataset '{ds.name}' changed on disk since the server loaded it (sha256 {job.dataset_sha256[:12]}"
                    f" then, {ds.sha256[:12]} now); reload the server's datasets"
                )
            policy = parse_policy(job.policy_yaml, source=job.policy_source)

            def progress(done: int, total: int) -> None:
                conn.send(("progress", done, total))

            verdict = evaluate(
                job.model,
                ds,
                policy,
                provider=job.provider,
                batch_size=job.batch_size,
                progress=progress,
                model_name=job.model_name,
                caches=caches,
                baseline=job.baseline,
                baseline_name=job.baseline_name,
                fingerprint=job.fingerprint,
                engine=settings.engine,
                ray_address=settings.ray_address,
            )
            conn.send(("verdict", verdict.to_dict()))
        except GateError as e:
            conn.send(("error", e.kind, e.message))
        except (BrokenPipeError, EOFError):
            return
        except Exception as e:  # reported, then the worker carries on with the next job
            log.exception("worker job failed")
            conn.send(("error", InternalError.kind, f"internal error: {type(e).__name__}: {e}"))
        finally:
            EVALUATION_ID.set(None)


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

    def wait_ready(self) -> None:
        """Block until the worker has started (its imports done)."""
        if not self.ready:
            message = self.receive(STARTUP_TIMEOUT_S)
            if message is None or message[0] != "ready":
                raise WorkerDiedError(f"the worker process did not start within {STARTUP_TIMEOUT_S:g} s")
            self.ready = True

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, job: LoadJob | EvaluateJob) -> None:
        try:
            self.conn.send(job)
        except (BrokenPipeError, OSError) as e:
            raise WorkerDiedError(f"the worker process {_death(self.process)}") from e

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """The next message, None after ``timeout``; WorkerDiedError when the worker died."""
        try:
            if not self.conn.poll(timeout):
                return None
            message: tuple[Any, ...] = self.conn.recv()
            return message
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
            self._all.discard(worker)
        if not self._closed:
            self._add()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.kill()


def load_in(worker: Worker, job: LoadJob, timeout: float) -> None:
    """Load the model in ``worker`` (creating its session) within ``timeout`` seconds;
    raises the load's error."""
    worker.send(job)
    reply = worker.receive(timeout)
    if reply is None:
        raise errors.EvaluationTimeoutError(f"loading the model took longer than {timeout:g} s")
    if reply[0] == "error":
        raise error_from(reply[1], reply[2])


def model_crash(error: WorkerDiedError) -> ModelError:
    return ModelError(
        f"the model crashed the worker process that loaded it ({error.message.removeprefix('the worker process ')})"
    )
