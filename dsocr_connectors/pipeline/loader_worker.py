"""A worker process (see `loader_processes.py`): renders the pages each request names, or
runs the function it names.

Run as `python -m dsocr_connectors.pipeline.loader_worker READ_FD WRITE_FD`; it reads
requests from one pipe (`loaders.iter_pages` arguments plus "source" and "image_dir", or "call":
"module:function" and "args") and answers each with ("ok", [LoadedPage, ...] or the
function's result) or ("error", message) on the other, until the first pipe closes.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

import loaders
from dsocr_connectors.pipeline.loader_processes import resolve
from loaders.page import LoadedPage, PackedTextLayer, PixelFile, TextLayer


def portable(page: LoadedPage, image_dir: str | None = None) -> LoadedPage:
    """The page as it crosses the pipe. A `LoaderError` does not unpickle (its constructor
    wants three arguments): its parts go instead. With `image_dir`, the pixels go through a
    file there (`LoadedPage.pixel_file`; PDF pages are rendered straight into one), not the
    pipe. The text layer goes as its pickle (`PackedTextLayer`), unpickled only where it is
    read."""
    if isinstance(page.text_layer, TextLayer):
        page.text_layer = PackedTextLayer.pack(page.text_layer)
    error = page.error
    if error is not None:
        page.error = ("LoaderError", error.source, error.reason, error.page)  # type: ignore[assignment]
    if image_dir is not None and page.image is not None:
        page.pixel_file = PixelFile.of(page.image, image_dir)
        if page.pixel_file is not None:
            page.image = None
    return page


def ping() -> bool:
    """Answered once the process has imported what it works with (`LoaderProcesses`
    counts a process as up then)."""
    return True


def serve(read_fd: int, write_fd: int) -> None:
    requests = Connection(read_fd, writable=False)
    replies = Connection(write_fd, readable=False)
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        try:
            if "call" in request:
                reply = ("ok", resolve(request["call"])(*request["args"]))
            else:
                source, image_dir = request.pop("source"), request.pop("image_dir", None)
                pages = loaders.iter_pages(source, pixel_dir=image_dir, **request)
                reply = ("ok", [portable(page, image_dir) for page in pages])
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            replies.send(reply)
        except OSError:  # the caller is gone
            return


if __name__ == "__main__":
    if os.environ.get("DSOCR_WORKER_NICE"):  # benchmarks: workers below the engine's thread
        os.nice(int(os.environ["DSOCR_WORKER_NICE"]))
    serve(int(sys.argv[1]), int(sys.argv[2]))
