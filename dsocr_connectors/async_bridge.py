"""Async iteration over a blocking generator: one worker thread feeding an asyncio queue.

The connectors' async methods (`aload_data`, `alazy_load_data`, `alazy_load`) run the whole
conversion (`Converter`: loading, the engine, parsing) in one worker thread per call and
hand each finished item to the event loop, which never blocks. The Converter keeps many
pages in flight in the engine on its own (batches, or `Engine.submit` futures with a
remote engine), so no thread is parked per page. At most `buffer` finished items wait in
the queue (back-pressure: the worker pauses while they do). When the consumer stops early
(break, cancellation), the worker stops after the item it is on and closes the generator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(make: Callable[[], Iterator[T]], *, buffer: int = 2,
                            name: str = "dsocr-async") -> AsyncIterator[T]:
    """Yield the items of `make()` (run in a worker thread) without blocking the loop.

    Args:
        make: builds the blocking iterator; called in the worker thread.
        buffer: finished items that may wait for the consumer.
        name: the worker thread's name.

    Raises:
        Whatever `make()` or the iteration raised, in the consumer.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(buffer)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Hand `item` to the loop; False when the consumer is gone."""
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop is closed
            return False
        while not stop.is_set():
            try:
                future.result(timeout=0.1)
                return True
            except FutureTimeout:
                continue
        future.cancel()
        return False

    def work() -> None:
        iterator = None
        try:
            iterator = make()
            for item in iterator:
                if stop.is_set() or not put((item, None)):
                    return
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
            if not stop.is_set():
                put((_DONE, error))
            return
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()
        if not stop.is_set():
            put((_DONE, None))

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = await queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()
