"""Conversion jobs: large files converted in the background, polled with `GET /v1/jobs/{id}`.

A job is held from its `202` until `job_ttl` seconds after it finishes; at most `max_jobs`
are held at once (the next one is refused with 429). Ids are random (`secrets`), so one
client cannot guess another's job. The store is touched from the event loop and from the
conversion threads, under one lock.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dsocr_connectors.document import Document, PageStatus
from dsocr_connectors.serve.gate import RequestEngine
from dsocr_connectors.serve.metrics import Metrics

STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Job:
    """One background conversion and what a client may see of it."""

    filename: str
    num_pages: int  # pages selected for conversion
    engine: RequestEngine
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    state: str = "queued"
    num_done: int = 0
    created: float = field(default_factory=time.time)
    finished: float | None = None
    document: Document | None = None
    error: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def status(self) -> dict[str, Any]:
        """The JSON a client polls: state and progress; the document once done."""
        status: dict[str, Any] = {
            "id": self.id, "object": "job", "state": self.state, "filename": self.filename,
            "progress": {"pages_done": self.num_done, "pages_total": self.num_pages},
            "created": self.created, "finished": self.finished,
        }
        if self.error is not None:
            status["error"] = self.error
        if self.document is not None:
            status["pages_failed"] = num_failed(self.document)
            status["document"] = self.document.model_dump(mode="json")
        return status


class JobStore:
    """The jobs held by one server.

    Args:
        max_jobs: jobs held at once.
        ttl: seconds a finished job is kept.
        metrics: the `dsocr_jobs` gauge is kept up to date.
    """

    def __init__(self, max_jobs: int, ttl: float, metrics: Metrics) -> None:
        self.max_jobs = max_jobs
        self.ttl = ttl
        self.metrics = metrics
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def add(self, job: Job) -> bool:
        """Hold `job`; False when `max_jobs` are already held."""
        with self._lock:
            self._expire()
            if len(self._jobs) >= self.max_jobs:
                return False
            self._jobs[job.id] = job
            self._count()
        return True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
            self._count()
            return job

    def set_state(self, job: Job, state: str, *, document: Document | None = None,
                  error: str | None = None) -> None:
        with self._lock:
            if job.is_finished:
                return  # cancelled while it ran: keep "cancelled"
            job.state = state
            job.document = document
            job.error = error
            if job.is_finished:
                job.finished = time.time()
            self._count()

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def _expire(self) -> None:
        now = time.time()
        for job_id in [j.id for j in self._jobs.values()
                       if j.finished is not None and now - j.finished > self.ttl]:
            del self._jobs[job_id]
        self._count()

    def _count(self) -> None:
        for state in STATES:
            self.metrics.jobs.labels(state).set(
                sum(1 for j in self._jobs.values() if j.state == state))


def num_failed(document: Document) -> int:
    """How many of the document's pages failed."""
    return sum(1 for p in document.pages if p.status == PageStatus.FAILED)
