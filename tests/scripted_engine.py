"""A scripted `Engine` for pipeline tests: canned outputs per page and attempt, batches logged.

Pages are told apart by `image.info["page_id"]` (set by `make_page`). A script maps a page id
to the attempts in order: each an output text and a finish reason, or "error" for a page the
engine reports as failed. Pages without a script get `CLEAN` with "eos".
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from core_model.engines.interface import PageRequest, PageResult
from loaders.page import LoadedPage, TextLayer, TextSpan

DATA = Path(__file__).parent / "data" / "pipeline"
CLEAN = (DATA / "056_issue75-en-title-only.txt").read_text()
TABLE_PAGE = (DATA / "002_odb-en-paper-table-image-multibox.txt").read_text()
TRUNCATED = (DATA / "040_rg-de-truncated-after-det-open.txt").read_text()


class ScriptedEngine:
    name = "scripted"

    def __init__(self, script=None, delay: float = 0.0, fail_calls: int = 0, **options):
        self.script = script or {}
        self.delay = delay
        self.fail_calls = fail_calls  # the first N generate calls raise
        self.options = options  # what a `module:attr` factory is given
        self.batches: list[list[tuple[str, str]]] = []  # (page id, mode) per call
        self.attempts: dict[str, int] = {}

    def generate(self, requests, *, on_token=None):
        self.batches.append([(_page_id(r), r.mode) for r in requests])
        if self.delay:
            time.sleep(self.delay * len(requests))
        if len(self.batches) <= self.fail_calls:
            raise RuntimeError("CUDA out of memory (scripted)")
        return [self._one(r) for r in requests]

    def _one(self, request: PageRequest) -> PageResult:
        page_id = _page_id(request)
        attempt = self.attempts.get(page_id, 0)
        self.attempts[page_id] = attempt + 1
        steps = self.script.get(page_id, [(CLEAN, "eos")])
        text, finish = steps[min(attempt, len(steps) - 1)]
        if finish == "error":
            return PageResult(text="", finish_reason="error", error=text, key=request.key)
        return PageResult(text=text, finish_reason=finish, num_vision_tokens=100,
                          num_output_tokens=len(text) // 4, timings={"decode": 0.01},
                          key=request.key)


def _page_id(request: PageRequest) -> str:
    return request.image.info.get("page_id", f"untagged-{id(request.image)}")


def make_page(source: str, number: int, *, text: str | None = None, usable: bool = False,
              total: int | None = None) -> LoadedPage:
    """A 64x64 page image tagged `source#number`, with a one-span text layer if `text`."""
    image = Image.new("RGB", (64, 64), "white")
    image.info["page_id"] = f"{source}#{number}"
    layer = None
    if text is not None:
        layer = TextLayer(spans=[TextSpan(text=text, bbox=(72, 100, 300, 112), size=10)],
                          text=text, is_usable=usable)
    return LoadedPage(source=source, number=number, total_pages=total, image=image,
                      width_pt=612, height_pt=792, text_layer=layer)


def slow_engine(**options) -> ScriptedEngine:
    """A factory for `--engine tests.scripted_engine:slow_engine` (CLI kill-and-resume test)."""
    return ScriptedEngine(delay=0.4)


class MarkerEngine(ScriptedEngine):
    """Reports every page as an engine error while the file named by `model` exists (the
    switch survives processes: Ray replicas make their own engine from `module:attr`)."""

    name = "marker"

    def __init__(self, model: str, **options):
        super().__init__(**options)
        self.marker = Path(model)

    def _one(self, request: PageRequest) -> PageResult:
        if self.marker.exists():
            return PageResult(text="", finish_reason="error", error="device lost (scripted)",
                              key=request.key)
        return super()._one(request)


class BrokenResultsEngine(ScriptedEngine):
    """Returns None for every page: building the page raises out of the converter's loop."""

    name = "broken-results"

    def generate(self, requests, *, on_token=None):
        return [None] * len(requests)


class CrashingEngine(ScriptedEngine):
    """Ends its process when given any page, as a crash in native code would."""

    name = "crashing"

    def generate(self, requests, *, on_token=None):
        import os

        os._exit(3)
