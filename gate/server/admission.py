"""Admission control: at most N evaluations run at once, at most Q more wait in a
bounded queue, and a caller beyond that gets RESOURCE_EXHAUSTED at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from gate.errors import CancelledError, OverloadedError


class Admission:
    def __init__(self, *, running: int, queued: int) -> None:
        self.max_running = running
        self.max_queued = queued
        self._running = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def acquire(self, is_active: Callable[[], bool] = lambda: True) -> None:
        """Take a running slot, waiting in the queue if needed. Raises OverloadedError
        when the queue is full and CancelledError when the caller goes away."""
        with self._cond:
            if self._running >= self.max_running and self._waiting >= self.max_queued:
                raise OverloadedError(
                    f"server busy: {self._running} evaluations running and {self._waiting} queued"
                    f" (limits {self.max_running} and {self.max_queued}); retry later"
                )
            self._waiting += 1
            try:
                while self._running >= self.max_running:
                    self._cond.wait(timeout=0.25)
                    if not is_active():
                        raise CancelledError("the client cancelled while the evaluation was queued")
                self._running += 1
            finally:
                self._waiting -= 1

    def release(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def slot(self, is_active: Callable[[], bool] = lambda: True) -> Iterator[None]:
        """A running slot for the block (see :meth:`acquire`), given back however it ends."""
        self.acquire(is_active)
        try:
            yield
        finally:
            self.release()
