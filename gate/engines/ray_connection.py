"""The driver's connection to Ray, shared by the evaluations of one process.

Ray is imported only when an evaluation asks for the Ray engine (the optional extra
``gate[ray]``). Evaluations may be asked for on several threads of one process; they
run one at a time (:data:`RUNNING`), sharing the process's Ray connection, and a cluster
this module started stops when the evaluation that started it ends. Ray Data is kept
quiet meanwhile, and Ray's driver output goes to stderr: stdout belongs to the verdict.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gate.errors import InternalError, RequestError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RUNNING", "connected", "ray_installed", "ray_module"]

_INSTALL_HINT = "install gate[ray] (pip install 'gate[ray]')"


def ray_installed() -> bool:
    """Whether Ray (the ``gate[ray]`` extra) can be imported here."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def ray_module() -> ModuleType:
    """The ``ray`` module, with Ray Data; a RequestError naming the extra when it is missing."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RequestError(f"the ray engine needs Ray, which is not installed here: {_INSTALL_HINT}") from e
    return ray


_LOCK = threading.Lock()
RUNNING = threading.Lock()  # held while a pipeline runs (see gate.engines.ray.evaluate_sharded)
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
def connected(address: str | None) -> Iterator[str]:
    """A connection to Ray: the one this process already has, the cluster at ``address``,
    or a local cluster started here (stopped when the last evaluation on it ends). Ray Data
    is kept quiet meanwhile. Yields the cluster's address, or ``local``."""
    global _USERS, _STARTED, _REACHED, _STDOUT
    ray = ray_module()
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
                        # Object references this evaluation left in reference cycles must go
                        # while their session lives: collected during the next session (a
                        # cluster started again, from another thread), their release made
                        # that session's pipeline fail on objects of unknown owner.
                        gc.collect()
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
