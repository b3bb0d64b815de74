"""Model uploads that a stalled or trickling client cannot use to freeze the server.

The gRPC server runs each call on a thread of a fixed pool, and a client-streamed upload
holds its thread for as long as the client keeps the stream open. So uploads are bounded
twice:

* at most ``max_concurrent_uploads`` run at once (:class:`UploadSlots`); one more is
  refused at once with RESOURCE_EXHAUSTED, and the pool has that many threads on top of
  those it keeps for evaluations and for everything else (health, reads, Reload);
* each upload's stream is read on a thread of its own (:func:`timed_requests`), so the
  handler can give up on it: after ``upload_idle_timeout_s`` without a message, after
  ``upload_timeout_s`` in all, or when, past its first ``upload_idle_timeout_s``, it has
  averaged less than ``upload_min_bytes_per_s``. It then ends with DEADLINE_EXCEEDED and
  a message saying which limit it hit; its temporary file is removed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.config import ServerConfig
from gate.errors import OverloadedError, RequestError

#: How many messages the reading thread may run ahead of the handler.
_READ_AHEAD = 4


class UploadTimeoutError(RequestError):
    """An upload stream stalled, crawled, or ran past the server's time limit."""


@dataclass(frozen=True)
class UploadLimits:
    concurrent: int
    idle_timeout_s: float
    total_timeout_s: float
    min_bytes_per_s: int

    @classmethod
    def from_config(cls, config: ServerConfig) -> UploadLimits:
        return cls(
            concurrent=config.max_concurrent_uploads,
            idle_timeout_s=config.upload_idle_timeout_s,
            total_timeout_s=config.upload_timeout_s,
            min_bytes_per_s=config.upload_min_bytes_per_s,
        )


class UploadSlots:
    """At most ``limits.concurrent`` uploads at once; one more is refused without waiting,
    so uploads never hold more of the server's threads than it set aside for them."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self._free = threading.BoundedSemaphore(limits.concurrent)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise OverloadedError(
                f"the server is receiving {self.limits.concurrent} uploads already (max_concurrent_uploads);"
                " retry shortly"
            )
        try:
            yield
        finally:
            self._free.release()


def _read(requests: Iterator[pb.ModelChunk], out: queue.Queue[tuple[str, object]], stop: threading.Event) -> None:
    """Move the stream's messages into ``out`` until it ends, fails, or ``stop`` is set
    (the handler gave up: the call has ended, and so will the stream's iteration)."""

    def put(item: tuple[str, object]) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                out.put(item, timeout=0.5)
                return True
        return False

    try:
        for chunk in requests:
            if not put(("chunk", chunk)):
                return
    except Exception as e:  # the client cancelled, or the call ended under us
        put(("error", e))
        return
    put(("end", None))


def timed_requests(requests: Iterator[pb.ModelChunk], limits: UploadLimits) -> Generator[pb.ModelChunk, None, None]:
    """``requests`` as they arrive, or :class:`UploadTimeoutError` once the stream breaks
    one of ``limits`` (see the module doc)."""
    arrived: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=_READ_AHEAD)
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(requests, arrived, stop), name="gate-upload-reader", daemon=True)
    reader.start()
    started = time.monotonic()
    received = 0
    try:
        while True:
            kind, item = _next_message(arrived, started, limits)
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, Exception)
                raise item
            assert isinstance(item, pb.ModelChunk)
            received += len(item.data)
            _check_rate(received, time.monotonic() - started, limits)
            yield item
    finally:
        stop.set()


def _next_message(arrived: queue.Queue[tuple[str, object]], started: float, limits: UploadLimits) -> tuple[str, object]:
    left = started + limits.total_timeout_s - time.monotonic()
    if left <= 0:
        raise _too_long(limits)
    try:
        return arrived.get(timeout=min(limits.idle_timeout_s, left))
    except queue.Empty:
        if time.monotonic() - started >= limits.total_timeout_s:
            raise _too_long(limits) from None
        raise UploadTimeoutError(
            f"the upload stalled: nothing arrived for {limits.idle_timeout_s:g} s (upload_idle_timeout_s);"
            " nothing was stored"
        ) from None


def _too_long(limits: UploadLimits) -> UploadTimeoutError:
    return UploadTimeoutError(
        f"the upload took longer than the server's limit of {limits.total_timeout_s:g} s (upload_timeout_s);"
        " nothing was stored"
    )


def _check_rate(received: int, elapsed_s: float, limits: UploadLimits) -> None:
    if elapsed_s > limits.idle_timeout_s and received < limits.min_bytes_per_s * elapsed_s:
        raise UploadTimeoutError(
            f"the upload is too slow: {received} bytes in {elapsed_s:.0f} s, below the server's minimum of"
            f" {limits.min_bytes_per_s} bytes a second (upload_min_bytes_per_s); nothing was stored"
        )
