"""Render ahead on a background thread, never more than a fixed number of pages ahead.

`prefetch(iter_pages(...), max_in_flight=4)` overlaps page rendering with whatever the
consumer does (running the model). The bound is a semaphore: the producer takes a permit
before it asks the wrapped iterator for the next item, the consumer gives it back when it
takes the item. So at most `max_in_flight` items exist that were produced (or are being
produced) and not yet taken; with the one the consumer holds, `max_in_flight + 1`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"


def prefetch(iterable: Iterable[T], max_in_flight: int = 2) -> Iterator[T]:
    """Iterate `iterable` on a background thread, at most `max_in_flight` items ahead.

    The thread starts on the first `next()`. Items come out in order; an exception raised
    by the wrapped iterator is re-raised here at its position. Closing this generator
    (or breaking out of a for loop) stops the thread and closes the wrapped iterator, so
    open files are released.

    Args:
        iterable: anything iterable; only the background thread touches it.
        max_in_flight: items produced ahead and not yet taken (>= 1).

    Raises:
        ValueError: `max_in_flight` is below 1.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    return _prefetch(iterable, max_in_flight)


def _prefetch(iterable: Iterable[T], max_in_flight: int) -> Iterator[T]:
    permits = threading.Semaphore(max_in_flight)
    items: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        source = iter(iterable)
        try:
            while True:
                permits.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(source)
                except StopIteration:
                    items.put((_END, None))
                    return
                except BaseException as error:  # handed to the consumer, raised there
                    items.put((_ERROR, error))
                    return
                items.put((_ITEM, item))
                del item  # the queue holds the only reference
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="loaders-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            tag, value = items.get()
            permits.release()
            if tag == _END:
                return
            if tag == _ERROR:
                raise value
            yield value
            del value  # do not keep the previous item alive while waiting for the next
    finally:
        stop.set()
        permits.release()  # wake the producer if it waits for a permit
        thread.join()
