"""Engines for `dsocr convert --engine tests.fault_engines:...` in fault tests (subprocesses).

They take their timing from the environment, which is not part of the options that decide
whether a document is done, so runs with other timings resume each other:
- `DSOCR_TEST_DELAY`: seconds per page (default 0);
- `DSOCR_TEST_FAIL`: the share of pages reported as engine errors (default 0), drawn at
  random per process;
- `DSOCR_TEST_GATE`: a file; while it exists, the engine waits before each call.
Every page gets a figure, a caption and a table (the crops and previews get written).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from core_model.engines.interface import PageResult

DATA = Path(__file__).parent / "data" / "pipeline"
FIGURE_PAGE = (DATA / "002_odb-en-paper-table-image-multibox.txt").read_text()


class FigureEngine:
    name = "figures"

    def __init__(self, **options) -> None:
        self.delay = float(os.environ.get("DSOCR_TEST_DELAY", "0"))
        self.fail = float(os.environ.get("DSOCR_TEST_FAIL", "0"))
        self.gate = os.environ.get("DSOCR_TEST_GATE")
        self.random = random.Random()

    def generate(self, requests, *, on_token=None):
        deadline = time.monotonic() + 60
        while self.gate and os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(self.delay * len(requests))
        return [self._one(r) for r in requests]

    def _one(self, request) -> PageResult:
        if self.random.random() < self.fail:
            return PageResult(text="", finish_reason="error", error="device lost (scripted)",
                              key=request.key)
        return PageResult(text=FIGURE_PAGE, finish_reason="eos", num_vision_tokens=100,
                          num_output_tokens=len(FIGURE_PAGE) // 4, key=request.key)


def figure_engine(**options) -> FigureEngine:
    """The factory `--engine tests.fault_engines:figure_engine` calls."""
    return FigureEngine(**options)


def run_cli(argv: list[str], log_path: str, env: dict[str, str]) -> None:
    """`dsocr ARGV` in this process with `env` added, its output into `log_path` (the
    target of a child forked from a fork server)."""
    from dsocr_connectors.cli import main

    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    print(f"--- pid {os.getpid()}: dsocr {' '.join(argv)}", flush=True)
    sys.exit(main(argv))


def nothing() -> None:
    """A child that does nothing (starts a fork server before anything is timed)."""
