"""Throughput of the native engine against transformers' `deepseek_ocr2` text model (GPU).

Full-size DeepSeek-OCR with random bf16 weights initialised on the GPU. For each mode (Base:
one 1024x1024 view; Gundam: a 1024 global view plus 3x2 tiles of 640) and batch size, pages
of a fixed synthetic image are read with EOS suppressed to exactly `--new-tokens` output
tokens each. Reported: pages/s and output tokens/s end to end (encoder + prefill + decode),
encoder ms/page, the decode step time at that batch, and peak GPU memory. Then the same greedy
decode through transformers' text model with its DynamicCache (eager experts loop, SDPA
attention) at the same batch sizes, from a prefilled prompt of the same length.

Run (see benchmarks/RESULTS.md):
    python benchmarks/throughput.py --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import traceback
from unittest import mock

import torch

from core_model.config import DeepseekOCRConfig
from core_model.engines.native import EngineConfig, NativeEngine
from core_model.engines.sequence import Sequence
from core_model.model import DeepseekOCRForCausalLM

IMAGE_ID = 128815
TEXT_IDS = [201, 128820, 52447, 270, 3372, 304, 56112, 16]  # "\n<|grounding|>Convert ... ."


class NoTokenizer:
    def decode(self, ids):
        return ""


def random_model(cfg, device: torch.device | str = "cuda") -> DeepseekOCRForCausalLM:
    """Either family's model built on `device` with random weights (bf16 on CUDA, float32 on
    the CPU): the work per page does not depend on the weights' values."""
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = DeepseekOCRForCausalLM(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_image(mode: str):
    from core_model.image_input import ImageInput

    g = torch.Generator().manual_seed(0)
    global_view = torch.rand(3, 1024, 1024, generator=g) * 2 - 1
    if mode == "base":
        return ImageInput(global_view=global_view, tiles=None, tile_grid=(1, 1))
    tiles = torch.rand(6, 3, 640, 640, generator=g) * 2 - 1
    return ImageInput(global_view=global_view, tiles=tiles, tile_grid=(3, 2))


def vision_tokens(mode: str) -> int:
    base = 16 * 17 + 1  # 16 rows of 16 + newline each, + separator
    return base if mode == "base" else base + 20 * 31  # 3x2 tiles: 20 rows of 30 + newline


def make_sequences(mode: str, batch: int, new_tokens: int):
    n = vision_tokens(mode)
    ids = [0] + [IMAGE_ID] * n + TEXT_IDS
    mask = [False] + [True] * n + [False] * len(TEXT_IDS)
    image = synthetic_image(mode)
    return [Sequence(i, new_tokens, prompt_ids=ids, image_mask=mask, image=image)
            for i in range(batch)]


def held_rows(runner, positions: torch.Tensor) -> torch.Tensor:
    """Slots 0..B-1 given real cache blocks up to `positions` (B,), so that a timed decode
    step reads and writes memory as a running batch does; `release_rows` gives them back."""
    for slot, position in enumerate(positions.tolist()):
        runner.blocks.grow(slot, position + 1)
    return torch.arange(len(positions))


def release_rows(runner, slots: torch.Tensor) -> None:
    for slot in slots.tolist():
        runner.blocks.release(slot)


def time_decode_step(engine: NativeEngine, batch: int, position: int, reps: int = 30) -> float:
    runner = engine.runner
    bucket = runner.bucket_for(batch)
    tokens = torch.randint(3, 1000, (bucket,))
    positions = torch.full((bucket,), position)
    slots = held_rows(runner, positions)
    runner.decode(tokens, positions, slots)  # capture if needed
    sync(runner.device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        runner.decode(tokens, positions, slots)
        sync(runner.device)
        times.append(time.perf_counter() - t0)
    release_rows(runner, slots)
    return statistics.median(times) * 1000


def bench_native(engine, mode, batch, new_tokens) -> dict:
    engine.run(make_sequences(mode, batch, new_tokens))  # warm-up, graphs
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    engine.stats = dict.fromkeys(engine.stats, 0)
    seqs = make_sequences(mode, batch, new_tokens)
    t0 = time.perf_counter()
    engine.run(seqs)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    assert all(len(s.output_ids) == new_tokens for s in seqs), [s.finish_reason for s in seqs]
    prompt = seqs[0].num_prompt_tokens
    return {
        "engine": "native", "mode": mode, "batch": batch, "new_tokens": new_tokens,
        "prompt_tokens": prompt, "wall_s": wall, "pages_per_s": batch / wall,
        "output_tokens_per_s": batch * new_tokens / wall,
        "encoder_ms_per_page": 1000 * statistics.mean(s.timings.get("encode", 0.0) for s in seqs),
        "decode_step_ms": time_decode_step(engine, batch, prompt + new_tokens // 2),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30,
        "phases_s": {k: round(v, 4) for k, v in engine.stats.items()},
        "decode_wall_ms_per_step": 1000 * engine.stats["decode_s"] / engine.stats["decode_steps"],
    }


def bench_transformers(batch: int, prompt: int, steps: int, cfg: DeepseekOCRConfig) -> dict:
    from transformers import DynamicCache
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
        DeepseekOcr2TextConfig,
    )
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextModel

    d = cfg.decoder
    tcfg = DeepseekOcr2TextConfig(
        vocab_size=d.vocab_size, hidden_size=d.hidden_size, intermediate_size=d.intermediate_size,
        moe_intermediate_size=d.moe_intermediate_size, num_hidden_layers=d.num_hidden_layers,
        num_attention_heads=d.num_attention_heads, num_key_value_heads=d.num_key_value_heads,
        n_routed_experts=d.n_routed_experts, n_shared_experts=d.n_shared_experts,
        num_experts_per_tok=d.num_experts_per_tok, topk_method="greedy",
        max_position_embeddings=d.max_position_embeddings, rms_norm_eps=d.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": d.rope_theta},
        mlp_layer_types=["dense"] + ["sparse"] * (d.num_hidden_layers - 1),
    )
    tcfg._attn_implementation = "sdpa"
    tcfg._experts_implementation = "eager"
    global _HF_MODEL
    if _HF_MODEL is None:
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            _HF_MODEL = (DeepseekOcr2TextModel(tcfg).eval(),
                         torch.nn.Linear(d.hidden_size, d.vocab_size, bias=False))
        torch.set_default_dtype(torch.float32)
    model, head = _HF_MODEL
    with torch.no_grad():
        embeds = torch.randn(batch, prompt, d.hidden_size, device="cuda", dtype=torch.bfloat16)
        past = DynamicCache(config=tcfg)
        out = model(inputs_embeds=embeds, past_key_values=past, use_cache=True)
        token = head(out.last_hidden_state[:, -1]).argmax(-1, keepdim=True)
        times = []
        for _ in range(steps + 2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            logits = head(out.last_hidden_state[:, -1]).float()
            logits[:, d.eos_token_id] = float("-inf")
            token = logits.argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    step = statistics.median(times[2:])
    return {"engine": "transformers", "batch": batch, "prompt_tokens": prompt,
            "decode_step_ms": step * 1000, "output_tokens_per_s": batch / step}


_HF_MODEL = None
# The fused backend again with one knob fixed: bm rows per block, bn/bk the tile sizes.
FUSED_VARIANTS = ("fused/bm=16", "fused/bm=32", "fused/bm=64", "fused/bn=32", "fused/bk=128")


@torch.no_grad()
def moe_sweep(token_counts: list[int]) -> list[dict]:
    """Time one full-size MoE layer per backend and token count, each replayed in a CUDA graph.

    `fused` runs with its own choices and again as each of `FUSED_VARIANTS`; then the parts
    (`_moe_parts`).
    """
    from core_model.moe import MoE

    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        moe = MoE(1280, 896, num_experts=64, top_k=6, num_shared_experts=2)
    torch.set_default_dtype(torch.float32)
    for p in moe.parameters():
        p.normal_(0, 0.02)
    moe.pack()
    rows = []
    for n in token_counts:
        x = torch.randn(n, 1280, device="cuda", dtype=torch.bfloat16)
        for name in ("gather", "dense", "grouped", "fused", *FUSED_VARIANTS, "loop"):
            backend, _, knobs = name.partition("/")
            if backend == "gather" and n > 256 or backend == "loop" and n < 256:
                continue  # gather copies every pair's weights; loop syncs: only where relevant
            moe.backend = backend
            try:
                with _fused_knobs(knobs):
                    moe(x)
                    if backend == "loop":  # host-synchronising, not capturable: timed eagerly
                        ms = _time_eager(lambda x=x: moe(x))
                    else:
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            moe(x)
                        ms = _time_graph(graph)
            except Exception as exc:  # report, keep going
                rows.append({"moe_backend": name, "tokens": n, "error": str(exc)[:200]})
                continue
            rows.append({"moe_backend": name, "tokens": n, "ms": ms})
            print(json.dumps(rows[-1]), flush=True)
        rows += _moe_parts(moe, x)
    return rows


def _moe_parts(moe, x: torch.Tensor) -> list[dict]:
    """Parts of the layer alone, each in its own CUDA graph: the routed experts only (no router,
    no shared experts) by `dense` and by `fused`, and the fused backend's alignment step (the
    Triton one it runs, and its torch reference)."""
    from core_model import fused_moe

    weights, ids = moe.route(x)
    block_m = fused_moe.block_m_for(ids.numel(), moe.num_experts)
    parts = {
        "dense:routed": lambda: moe._routed(x, weights, ids, "dense"),
        "fused:routed": lambda: moe._routed(x, weights, ids, "fused"),
        "fused:align": lambda: fused_moe.align_triton(ids, moe.num_experts, block_m),
        "fused:align-torch": lambda: fused_moe.align(ids, moe.num_experts, block_m),
    }
    rows = []
    for name, fn in parts.items():
        try:
            fn()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            rows.append({"moe_backend": name, "tokens": len(x), "ms": _time_graph(graph)})
        except Exception as exc:  # report, keep going
            rows.append({"moe_backend": name, "tokens": len(x), "error": str(exc)[:200]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _fused_knobs(knobs: str):
    """A context fixing `core_model.fused_moe`'s choices, e.g. "bm=32" or "bn=32,bk=128"."""
    from core_model import fused_moe

    values = {k: int(v) for k, v in (kv.split("=") for kv in knobs.split(",") if kv)}
    patches = {}
    if "bm" in values:
        patches["block_m_for"] = lambda *_, b=values["bm"]: b
    for knob, name in (("bn", "BLOCK_N"), ("bk", "BLOCK_K")):
        if knob in values:
            patches[name] = values[knob]
    return mock.patch.multiple(fused_moe, **patches) if patches else contextlib.nullcontext()


def _time_eager(fn, reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _time_graph(graph, reps: int = 50) -> float:
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["base", "gundam"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64, 128, 256])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--baseline-batch-sizes", nargs="*", type=int, default=None)
    ap.add_argument("--baseline-steps", type=int, default=12)
    ap.add_argument("--moe-backend", default="auto")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--moe-sweep", nargs="*", type=int, default=[],
                    help="also time one MoE layer per backend at these token counts")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    sweep = moe_sweep(args.moe_sweep) if args.moe_sweep else []

    cfg = DeepseekOCRConfig()
    model = random_model(cfg)
    longest = 1 + vision_tokens("gundam" if "gundam" in args.modes else "base") + len(TEXT_IDS)
    max_len = -(-(longest + args.new_tokens) // 256) * 256
    engine = NativeEngine(model, NoTokenizer(), EngineConfig(
        max_batch_size=max(args.batch_sizes), max_new_tokens=args.new_tokens, max_len=max_len,
        eager=args.eager, moe_backend=args.moe_backend, suppress_eos=True,
        no_repeat_ngram_size=0, detect_loops=False, max_admit=64,
    ))
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, vision "
          "DeepEncoder, "
          f"slots {engine.runner.num_slots} x {max_len}", flush=True)
    rows = []
    for mode in args.modes:
        for batch in args.batch_sizes:
            try:
                row = bench_native(engine, mode, batch, args.new_tokens)
            except Exception as exc:  # keep the other rows; say what broke
                traceback.print_exc()
                print(json.dumps({"engine": "native", "mode": mode, "batch": batch,
                                  "error": repr(exc)[:300]}), flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
    base_batches = args.baseline_batch_sizes
    if base_batches is None:
        base_batches = args.batch_sizes
    for batch in base_batches:
        try:
            row = bench_transformers(batch, 1 + vision_tokens("base") + len(TEXT_IDS),
                                     args.baseline_steps, cfg)
        except Exception as exc:
            traceback.print_exc()
            print(json.dumps({"engine": "transformers", "batch": batch,
                              "error": repr(exc)[:300]}), flush=True)
            continue
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "args": vars(args), "rows": rows, "moe_sweep": sweep}, f, indent=1)


def print_table(rows: list[dict]) -> None:
    print(f"\n{'engine':<13}{'mode':<8}{'batch':>6}{'pages/s':>9}{'out tok/s':>11}"
          f"{'enc ms/pg':>10}{'step ms':>9}{'peak GiB':>9}")
    for r in rows:
        print(f"{r['engine']:<13}{r.get('mode', 'text'):<8}{r['batch']:>6}"
              f"{r.get('pages_per_s', float('nan')):>9.2f}{r['output_tokens_per_s']:>11.0f}"
              f"{r.get('encoder_ms_per_page', float('nan')):>10.1f}{r['decode_step_ms']:>9.2f}"
              f"{r.get('peak_gpu_gib', float('nan')):>9.1f}")


if __name__ == "__main__":
    main()
