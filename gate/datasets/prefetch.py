"""Producing batches on a background thread, a bounded number ahead of their consumer.

Decoding, reading the tensor cache and normalising run here while ONNX Runtime (which
releases the GIL) runs the previous batch, so data preparation and inference overlap.
At most ``depth`` batches wait in the queue: memory stays bounded whatever the set's size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what ``items`` yields, produced on a thread up to ``depth`` items ahead.

    An exception in the producer is raised here, at the item where it happened; closing
    this generator early stops the producer (and closes ``items``).
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome: object = _DONE
        except BaseException as e:  # handed to the consumer, raised there
            outcome = e
        finally:
            if stop.is_set() and hasattr(items, "close"):
                items.close()
        while not stop.is_set():
            try:
                slots.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="gate-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
