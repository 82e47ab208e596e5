"""The server's Prometheus metrics: pages, tokens, queue depth, latencies, refusals, jobs.

Each app has its own registry (`Metrics.registry`), so several apps in one process (tests,
benchmarks) never share counters. `GET /metrics` returns `Metrics.render()`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A page takes from tens of milliseconds (a cached tiny page) to minutes (8k tokens in a queue).
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


class Metrics:
    """The counters, gauges and histograms of one server."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.pages = Counter("dsocr_pages", "Pages the engine finished, by finish reason",
                             ["finish_reason"], registry=r)
        self.prompt_tokens = Counter("dsocr_prompt_tokens", "Prompt tokens (image included)",
                                     registry=r)
        self.output_tokens = Counter("dsocr_output_tokens", "Generated tokens", registry=r)
        self.queue_depth = Gauge("dsocr_queue_depth",
                                 "Pages submitted to the engine and not finished", registry=r)
        self.page_seconds = Histogram("dsocr_page_seconds",
                                      "Seconds from a page's submission to its result",
                                      buckets=SECONDS_BUCKETS, registry=r)
        self.requests = Counter("dsocr_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("dsocr_request_seconds", "HTTP request latency",
                                         ["route"], buckets=SECONDS_BUCKETS, registry=r)
        self.rejected = Counter("dsocr_rejected", "Requests refused, by reason", ["reason"],
                                registry=r)
        self.jobs = Gauge("dsocr_jobs", "Conversion jobs held, by state", ["state"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
