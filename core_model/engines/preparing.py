"""Page views prepared in processes of their own, so that the engine's process keeps its GIL.

Preparing a page (its pixels read, oriented, resized, padded and cut into tiles, as uint8)
takes 40 ms (Base) to 83 ms (Gundam) of an H200 host core, and several of its PIL and numpy
steps hold the GIL: raw pixels read into a new image, the copies of orientation and RGB
conversion, the bytes out of PIL. In the engine's process they compete with the thread that
launches the GPU's work. Measured on the H200 with 8 preparing threads (RESULTS.md, round 8):
half of the GIL's samples were in reading pixel files, pages streamed in by 3.1 s were
prepared only by 6.9 s, and the `Converter` ran at 76-80% of its engine in Base.

`PreparingProcesses` prepares in worker processes (`prepare_worker.py`) the pages whose image
is a lazy image that pickles (a file of pixels: `loaders.page.PixelFile`, what the loading
processes hand over). There is one worker per preparing thread, so a thread never waits for
one. A worker writes the views to a file in a scratch folder (shared memory) and answers with
their shapes; the preparing thread reads the file in one call, the GIL released, then pins it.
Images in memory, and lazy images that do not pickle, are prepared in the thread as before;
so is a page whose worker died (a new worker takes the next page; after `MAX_DEATHS` deaths
no more are started and every page is prepared in its thread).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import weakref
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch
from PIL import Image

from core_model.image_input import ImageInput
from core_model.worker_process import Child, scratch_dir, start_child

log = logging.getLogger(__name__)

WORKER_MODULE = "core_model.engines.prepare_worker"
VIEWS_DIR_PREFIX = "dsocr-views-"  # + the owning process id
MAX_DEATHS = 3


class PreparingProcesses:
    """`count` preparing processes for a model of `family`, started now (their imports, ~2 s,
    overlap the engine's warm-up). `on_page`, when given, is called with "prepared_in_process"
    for each lazy page prepared here and "prepared_in_thread" for each left to the caller.

    Raises:
        OSError: No scratch folder can be made, or no process started.
    """

    def __init__(self, count: int, family: str,
                 on_page: Callable[[str], None] | None = None) -> None:
        folder = scratch_dir(VIEWS_DIR_PREFIX)
        if folder is None:
            raise OSError("no folder for the prepared views")
        self.folder, self.family, self.on_page = folder, family, on_page
        self._idle: queue.SimpleQueue[Child | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[Child] = []
        self._deaths = 0
        self.closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._workers, folder)
        try:
            for _ in range(count):
                self._idle.put(self._start())
        except BaseException:
            self.close()
            raise

    def prepare(self, image: Any, mode: Any) -> ImageInput | None:
        """The uint8 views of a lazy `image` in `mode`, prepared in a worker; None for an
        image that does not go to one (in memory, does not pickle, its worker died, the pool
        is closed): the caller prepares it.

        Raises:
            ValueError: The page cannot be prepared (the worker's message).
        """
        reply = self._ask(image, mode)
        if reply is None:
            self._count("prepared_in_thread")
            return None
        if reply[0] == "error":
            raise ValueError(reply[1])
        self._count("prepared_in_process")
        return read_views(*reply[1:])

    def _ask(self, image: Any, mode: Any) -> tuple | None:
        """A worker's reply for the page, or None where it does not go to one."""
        if isinstance(image, Image.Image) or not callable(image) or self.closed:
            return None
        try:
            request = ForkingPickler.dumps((image, mode, self.family))
        except Exception:  # a closure, a lambda: read in the caller's thread
            return None
        worker = self._idle.get()
        try:
            if worker is None:
                return None
            worker.requests.send_bytes(request)
            return worker.replies.recv()
        except (EOFError, OSError) as exc:
            worker = self._replace(worker, exc)
            return None
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop the workers (each ends when its pipe closes) and remove the scratch folder."""
        self.closed = True
        self._finalizer()

    def _start(self) -> Child:
        worker = start_child(WORKER_MODULE, self.folder)
        with self._lock:
            self._workers.append(worker)
        return worker

    def _replace(self, worker: Child, exc: BaseException) -> Child | None:
        """A worker that died: stopped, and a new one in its place while deaths are few."""
        worker.stop()
        with self._lock:
            self._workers.remove(worker)
            self._deaths += 1
            deaths = self._deaths
        if self.closed:
            return None
        code = worker.process.returncode
        if deaths >= MAX_DEATHS:
            log.warning("a page-preparing process ended (%s, exit code %s); %d have: pages are "
                        "prepared in the engine's threads from now on", exc, code, deaths)
            return None
        log.warning("a page-preparing process ended (%s, exit code %s); its page is prepared "
                    "in the engine's thread and a new process takes the next", exc, code)
        try:
            return self._start()
        except OSError:
            return None

    def _count(self, key: str) -> None:
        if self.on_page is not None:
            self.on_page(key)


def read_views(path: str, global_shape: tuple, tiles_shape: tuple | None,
               tile_grid: tuple[int, int]) -> ImageInput:
    """The views a worker wrote to `path` (then deleted) as uint8 tensors."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # one read, without the GIL
    finally:
        os.unlink(path)
    size = int(np.prod(global_shape))
    global_view = torch.from_numpy(data[:size]).view(global_shape)
    tiles = None if tiles_shape is None else torch.from_numpy(data[size:]).view(tiles_shape)
    return ImageInput(global_view=global_view, tiles=tiles, tile_grid=tile_grid)


def _stop_all(workers: list[Child], folder: str) -> None:
    for worker in list(workers):
        worker.stop()
    shutil.rmtree(folder, ignore_errors=True)
