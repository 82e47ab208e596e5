"""Throughput of the native engine on DeepSeek-OCR-2 (GPU): full-size model, random weights.

Measured as benchmarks/throughput.py measures DeepSeek-OCR: the model is built on the device
with random bf16 weights (no checkpoint file); for each mode (small: one 768-px view, 145
vision tokens; base: one 1024-px view, 257; gundam: 1024 px plus 3x2 tiles of 768, 1121) and
batch size, pages of a fixed synthetic image are read with EOS suppressed to exactly
`--new-tokens` output tokens each, after one warm-up run of the same batch (CUDA graphs
captured). Reported per row: pages/s and output tokens/s end to end (encoder + prefill +
decode), encoder ms/page, the decode step time at that batch, peak GPU memory.

Run on one H200 (about 3 minutes):
    python -m benchmarks.ocr2 --out benchmarks/results_h200_ocr2.json
CPU smoke run at tiny sizes (what tests/test_benchmark_ocr2.py runs):
    python -m benchmarks.ocr2 --tiny --device cpu --batch-sizes 2 --new-tokens 3 --step-reps 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback

import torch

from benchmarks.throughput import random_model, sync, time_decode_step
from core_model.config import DeepseekOCR2Config, config_from_dict
from core_model.deep_encoder_v2 import num_vision_tokens
from core_model.engines.native import EngineConfig, NativeEngine
from core_model.engines.sequence import Sequence
from core_model.image_input import ImageInput
from core_model.modes import OCR2_MODES

IMAGE_ID = 128815
TEXT_IDS = [201, 128820, 52447, 270, 3372, 304, 56112, 16]  # "\n<|grounding|>Convert ... ."
GUNDAM_GRID = (3, 2)  # an A4-like landscape page: 6 tiles, the most the release uses
TINY = {  # released layout and view geometry, tiny widths (CPU smoke runs)
    "architectures": ["DeepseekOCR2ForCausalLM"], "vocab_size": 129280, "hidden_size": 64,
    "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 8,
    "n_shared_experts": 2, "num_experts_per_tok": 3, "max_position_embeddings": 2048,
    "projector_config": {"input_dim": 32},
    "vision_config": {"width": {
        "sam_vit_b": {"width": 16, "layers": 1, "heads": 1, "global_attn_indexes": [],
                      "downsample_channels": [16, 32], "mlp_dim": 32, "out_chans": 16},
        "qwen2-0-5b": {"dim": 32, "layers": 1, "heads": 4, "kv_heads": 2, "mlp_dim": 64},
    }},
}


class NoTokenizer:
    def decode(self, ids):
        return ""


def synthetic_image(mode: str) -> ImageInput:
    m = OCR2_MODES[mode]
    g = torch.Generator().manual_seed(0)
    view = torch.rand(3, m.base_size, m.base_size, generator=g) * 2 - 1
    if not m.crop:
        return ImageInput(global_view=view)
    cols, rows = GUNDAM_GRID
    tiles = torch.rand(cols * rows, 3, m.image_size, m.image_size, generator=g) * 2 - 1
    return ImageInput(global_view=view, tiles=tiles, tile_grid=GUNDAM_GRID)


def vision_tokens(mode: str, cfg: DeepseekOCR2Config) -> int:
    m = OCR2_MODES[mode]
    grid = GUNDAM_GRID if m.crop else (1, 1)
    return num_vision_tokens(m.base_size, m.image_size, grid, cfg)


def make_sequences(mode: str, batch: int, new_tokens: int, cfg: DeepseekOCR2Config):
    n = vision_tokens(mode, cfg)
    ids = [0] + [IMAGE_ID] * n + TEXT_IDS
    mask = [False] + [True] * n + [False] * len(TEXT_IDS)
    image = synthetic_image(mode)
    return [Sequence(i, new_tokens, prompt_ids=ids, image_mask=mask, image=image)
            for i in range(batch)]


def bench(engine: NativeEngine, mode: str, batch: int, new_tokens: int, cfg, reps: int = 30) -> dict:
    device = engine.runner.device
    engine.run(make_sequences(mode, batch, new_tokens, cfg))  # warm-up, graphs
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    engine.stats = dict.fromkeys(engine.stats, 0)
    seqs = make_sequences(mode, batch, new_tokens, cfg)
    t0 = time.perf_counter()
    engine.run(seqs)
    sync(device)
    wall = time.perf_counter() - t0
    assert all(len(s.output_ids) == new_tokens for s in seqs), [s.finish_reason for s in seqs]
    prompt = seqs[0].num_prompt_tokens
    steps = max(1, engine.stats["decode_steps"])
    return {
        "engine": "native", "model": "deepseek-ocr-2", "mode": mode, "batch": batch,
        "new_tokens": new_tokens, "prompt_tokens": prompt, "wall_s": wall,
        "pages_per_s": batch / wall, "output_tokens_per_s": batch * new_tokens / wall,
        "encoder_ms_per_page": 1000 * statistics.mean(s.timings.get("encode", 0.0) for s in seqs),
        "decode_step_ms": time_decode_step(engine, batch, prompt + new_tokens // 2, reps),
        "peak_gpu_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda" else None,
        "phases_s": {k: round(v, 4) for k, v in engine.stats.items()},
        "decode_wall_ms_per_step": 1000 * engine.stats["decode_s"] / steps,
    }


def print_table(rows: list[dict]) -> None:
    nan = float("nan")
    print(f"\n{'model':<16}{'mode':<8}{'batch':>6}{'pages/s':>9}{'out tok/s':>11}"
          f"{'enc ms/pg':>10}{'step ms':>9}{'peak GiB':>9}")
    for r in rows:
        print(f"{r['model']:<16}{r['mode']:<8}{r['batch']:>6}{r['pages_per_s']:>9.2f}"
              f"{r['output_tokens_per_s']:>11.0f}{r['encoder_ms_per_page']:>10.1f}"
              f"{r['decode_step_ms']:>9.2f}{r['peak_gpu_gib'] or nan:>9.1f}")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["base", "gundam"], choices=list(OCR2_MODES))
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64, 128, 256])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--moe-backend", default="auto")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny widths (CPU smoke run)")
    ap.add_argument("--step-reps", type=int, default=30, help="decode steps timed per row")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cfg = config_from_dict(TINY) if args.tiny else DeepseekOCR2Config()
    model = random_model(cfg, device)
    longest = 1 + max(vision_tokens(m, cfg) for m in args.modes) + len(TEXT_IDS)
    max_len = -(-(longest + args.new_tokens) // 256) * 256
    engine = NativeEngine(model, NoTokenizer(), EngineConfig(
        max_batch_size=max(args.batch_sizes), max_new_tokens=args.new_tokens, max_len=max_len,
        eager=args.eager, moe_backend=args.moe_backend, suppress_eos=True,
        no_repeat_ngram_size=0, detect_loops=False, max_admit=64, preprocess_workers=1,
    ))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, DeepSeek-OCR-2"
          f"{' (tiny)' if args.tiny else ''}, slots {engine.runner.num_slots} x {max_len}",
          flush=True)
    rows = []
    for mode in args.modes:
        for batch in args.batch_sizes:
            try:
                row = bench(engine, mode, batch, args.new_tokens, cfg, args.step_reps)
            except Exception as exc:  # keep the other rows; say what broke
                traceback.print_exc()
                print(json.dumps({"mode": mode, "batch": batch, "error": repr(exc)[:300]}),
                      flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "args": vars(args),
                       "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
