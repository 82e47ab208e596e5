"""Pages/s through the whole `Engine.generate` path: PIL page images in, text out (GPU).

Unlike `throughput.py`, which feeds ready tensors to isolate the model, this starts from A4
page images rendered at 144 dpi, so EXIF/RGB/padding/tiling/normalisation (the CPU side)
count, with the real tokenizer building each prompt and the decoding rules on (windowed
n-gram, loop detection). Full-size random bf16 weights; EOS suppressed, so each page decodes
until `--new-tokens` or until the loop detector stops it (random weights loop often): the
table reports the tokens actually produced. Run with several `--workers` values to see the
preprocessing threads keep the GPU fed.

    python -m benchmarks.pages --tokenizer path/to/tokenizer.json --out pages.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch
from PIL import Image, ImageDraw

from benchmarks.throughput import random_model
from core_model.config import DeepseekOCRConfig
from core_model.engines.interface import PageRequest
from core_model.engines.native import EngineConfig, NativeEngine
from core_model.tokenizer import load_tokenizer

A4_144DPI = (1191, 1684)


def page_image(seed: int) -> Image.Image:
    """A document-like page: text lines and a table grid, black on white."""
    rng = random.Random(seed)
    image = Image.new("RGB", A4_144DPI, "white")
    draw = ImageDraw.Draw(image)
    y = 120
    while y < 1500:
        x = 110
        while x < 1050:
            w = rng.randint(20, 90)
            draw.rectangle([x, y, x + w, y + 14], fill="black")
            x += w + 12
        y += rng.choice((26, 26, 26, 60))
    return image


def bench(engine: NativeEngine, mode: str, batch: int, new_tokens: int) -> dict:
    images = [page_image(i) for i in range(batch)]
    requests = [PageRequest(image=im, mode=mode, max_new_tokens=new_tokens) for im in images]
    engine.generate(requests)  # warm-up at full size: every graph bucket, the allocator
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    results = engine.generate(requests)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    tokens = sum(r.num_output_tokens for r in results)
    return {
        "mode": mode, "batch": batch, "workers": engine.config.preprocess_workers,
        "wall_s": wall, "pages_per_s": batch / wall, "output_tokens_per_s": tokens / wall,
        "mean_output_tokens": tokens / batch,
        "finish": {k: sum(r.finish_reason == k for r in results) for k in
                   ("eos", "length", "repetition", "error")},
        "preprocess_wait_ms": 1000 * statistics.mean(
            r.timings.get("preprocess_wait", 0.0) for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json of DeepSeek-OCR")
    ap.add_argument("--modes", nargs="+", default=["base", "gundam"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--rules", nargs="+", choices=["on", "off"], default=["on"],
                    help="decoding rules (n-gram, loop detection) on, off, or both in turn")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = random_model(DeepseekOCRConfig())
    tokenizer = load_tokenizer(args.tokenizer)
    rows = []
    for rules in args.rules:
        engine = NativeEngine(model, tokenizer, EngineConfig(
            max_batch_size=max(args.batch_sizes), max_new_tokens=args.new_tokens,
            max_len=2048, suppress_eos=True, detect_loops=rules == "on",
            no_repeat_ngram_size=20 if rules == "on" else 0,
        ))
        for workers in args.workers:
            engine.config.preprocess_workers = workers
            if engine._pool is not None:  # a pool of the new size on the next call
                engine._pool.shutdown()
                engine._pool = None
            for mode in args.modes:
                for batch in args.batch_sizes:
                    rows.append({"rules": rules, **bench(engine, mode, batch, args.new_tokens)})
                    print(json.dumps(rows[-1]), flush=True)
        if engine._pool is not None:
            engine._pool.shutdown()
        del engine  # its KV cache and graphs, before the next engine sizes its own
        torch.cuda.empty_cache()
    print(f"\n{'rules':5} {'mode':8} {'batch':>5} {'workers':>7} {'pages/s':>8} {'out tok/s':>9} "
          f"{'tok/page':>8} {'prep wait ms':>12}")
    for r in rows:
        print(f"{r['rules']:5} {r['mode']:8} {r['batch']:5d} {r['workers']:7d} "
              f"{r['pages_per_s']:8.2f} "
              f"{r['output_tokens_per_s']:9.0f} {r['mean_output_tokens']:8.0f} "
              f"{r['preprocess_wait_ms']:12.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
