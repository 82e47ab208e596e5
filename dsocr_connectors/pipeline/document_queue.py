"""`DocumentQueue`: one long-lived streaming run of a `Converter` that documents join one at
a time, from any thread, each getting a future of its `Document`.

A server or a Ray replica receives documents one by one; converting each with its own
`Converter.convert` call would empty the engine between documents. Here all of them share
one run (`Converter.iter_done` over a queue of jobs): the engine keeps working while
documents come and go, and each future completes as soon as its document does.

If the run itself breaks (a bug, a broken loading worker), the documents in it fail with
that error, and the next `submit` starts a new run.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dsocr_connectors.document import Document
from dsocr_connectors.pipeline.feed import Job

if TYPE_CHECKING:
    from dsocr_connectors.pipeline.converter import Converter


class DocumentQueue:
    """Documents submitted one by one into one streaming run of `converter`.

    Args:
        converter: the converter whose engine and settings every document uses.
    """

    def __init__(self, converter: Converter) -> None:
        self.converter = converter
        self._lock = threading.Lock()
        self._run_now: _Run | None = None  # the run new documents join

    def submit(self, job: Job | Any) -> Future[Document]:
        """Add a document (a `Job`, or a source) to the run; the future gives its Document
        or raises the error that broke the run."""
        job = Job(job.source, job.name, job.pages) if isinstance(job, Job) else Job(job)  # its own
        future: Future[Document] = Future()
        with self._lock:
            run = self._run_now
            if run is None:
                run = self._run_now = _Run()
                threading.Thread(target=self._work, args=(run,), name="dsocr-documents",
                                 daemon=True).start()
            run.waiting[id(job)] = future
            run.jobs.put(job)
        return future

    def convert(self, job: Job | Any) -> Document:
        """`submit` and wait."""
        return self.submit(job).result()

    def close(self) -> None:
        """End the run once the documents in it are done."""
        with self._lock:
            if self._run_now is not None:
                self._run_now.jobs.put(None)
                self._run_now = None

    def _work(self, run: _Run) -> None:
        try:
            for job, document in self.converter.iter_done(iter(run.jobs.get, None)):
                with self._lock:
                    future = run.waiting.pop(id(job))
                future.set_result(document)
        except BaseException as exc:  # the run broke: its documents fail, the next starts anew
            with self._lock:
                if self._run_now is run:
                    self._run_now = None
                waiting, run.waiting = run.waiting, {}
            run.jobs.put(None)  # a feed still waiting for jobs stops
            for future in waiting.values():
                future.set_exception(exc)


class _Run:
    """One run's job queue (None ends it) and its documents' futures by `id(job)`."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.waiting: dict[int, Future[Document]] = {}
