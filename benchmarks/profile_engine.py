"""Where the native engine's time goes on real page lengths (GPU): one run, four probes.

1. decode attention: the Triton kernel (each row reads its own length) against masked SDPA
   over the batch's span, on a batch whose cache lengths follow real pages;
2. the decode step at several batch sizes with those lengths, both attentions;
3. the DeepEncoder per page (Base, Gundam) and its top CUDA kernels;
4. the engine alone on the realistic mix: N A4 pages submitted at once, each decoding exactly
   a length drawn from real outputs (EOS suppressed, loop detection off), with the engine's
   phase split (encode, prefill, decode steps) and the mean running batch.

    python -m benchmarks.profile_engine --tokenizer tokenizer.json \
        --lengths benchmarks/data/real_lengths.json --out profile.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.pages import page_image
from benchmarks.throughput import held_rows, random_model, release_rows
from core_model import decode_attention
from core_model.config import DeepseekOCRConfig
from core_model.engines.interface import PageRequest
from core_model.engines.native import EngineConfig, NativeEngine
from core_model.preprocess import prepare_image
from core_model.tokenizer import load_tokenizer


def load_lengths(path: str) -> list[int]:
    data = json.load(open(path))
    lengths = data["lengths"] if isinstance(data, dict) else data
    return [int(n) for n in (lengths.values() if isinstance(lengths, dict) else lengths)]


def cuda_ms(fn, reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


# Kernel settings tried by the attention probe: (SPLIT, BLOCK_N, NUM_WARPS, NUM_STAGES).
KERNEL_SETTINGS = [(512, 64, 4, 3), (256, 64, 4, 3), (512, 128, 8, 3), (512, 32, 4, 3),
                   (512, 64, 4, 4), (512, 64, 4, 2), (1024, 64, 4, 3), (256, 32, 2, 3),
                   (128, 64, 4, 3), (512, 32, 2, 4)]


def probe_attention(lengths: list[int], prompt: int) -> dict:
    """Kernel vs masked SDPA on one layer's cache, batch 256, real lengths; the kernel with
    each of `KERNEL_SETTINGS`."""
    rng = random.Random(0)
    B, H, D, T, block = 256, 10, 128, 8192, 128
    lens = torch.tensor([prompt + rng.randrange(max(1, n)) for n in rng.choices(lengths, k=B)],
                        device="cuda")
    k = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    q = torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16)
    n = T // block  # the same keys as scattered blocks
    tables = (torch.randperm(B * n, device="cuda") + 1).view(B, n).to(torch.int32)
    k_blocks = torch.empty(1 + B * n, H, block, D, device="cuda", dtype=k.dtype)
    v_blocks = torch.empty_like(k_blocks)
    for src, dst in ((k, k_blocks), (v, v_blocks)):
        dst[tables.long().flatten()] = src.view(B, H, n, block, D).transpose(1, 2).reshape(-1, H, block, D)

    def kernel():
        return decode_attention.decode_attention(q, k_blocks, v_blocks, tables, lens, D**-0.5)

    out = kernel()
    span = int(lens.max())
    mask = (torch.arange(span, device="cuda")[None] < lens[:, None])[:, None, None]
    ref = F.scaled_dot_product_attention(q[:, :, None], k[:, :, :span], v[:, :, :span],
                                         attn_mask=mask)[:, :, 0]
    row = {
        "max_abs_err": (out.float() - ref.float()).abs().max().item(),
        "mean_len": lens.float().mean().item(), "span": span,
        "kernel_ms": cuda_ms(kernel),
        "sdpa_ms": cuda_ms(lambda: F.scaled_dot_product_attention(
            q[:, :, None], k[:, :, :span], v[:, :, :span], attn_mask=mask)),
        "gb_read": 2 * float(lens.sum()) * H * D * 2 / 1e9, "settings": {},
    }
    default = (decode_attention.SPLIT, decode_attention.BLOCK_N, decode_attention.NUM_WARPS,
               decode_attention.NUM_STAGES)
    for setting in KERNEL_SETTINGS:
        (decode_attention.SPLIT, decode_attention.BLOCK_N, decode_attention.NUM_WARPS,
         decode_attention.NUM_STAGES) = setting
        try:
            err = (kernel().float() - ref.float()).abs().max().item()
            row["settings"][str(setting)] = {"ms": cuda_ms(kernel), "max_abs_err": err}
        except Exception as exc:  # a setting the compiler refuses: say so, go on
            row["settings"][str(setting)] = {"error": repr(exc)[:200]}
    (decode_attention.SPLIT, decode_attention.BLOCK_N, decode_attention.NUM_WARPS,
     decode_attention.NUM_STAGES) = default
    return row


def probe_steps(engine: NativeEngine, lengths: list[int], prompt: int) -> list[dict]:
    rows, rng = [], random.Random(1)
    runner = engine.runner
    for batch in (32, 128, runner.bucket_for(min(256, runner.num_slots))):
        positions = torch.tensor([prompt + rng.randrange(max(1, n))
                                  for n in rng.choices(lengths, k=batch)])
        tokens = torch.randint(3, 1000, (batch,))
        slots = held_rows(runner, positions)
        row = {"batch": batch, "mean_position": positions.float().mean().item(),
               "max_position": int(positions.max())}
        for use_kernel in (True, False):
            runner.use_kernel = use_kernel
            row["kernel_ms" if use_kernel else "sdpa_ms"] = cuda_ms(
                lambda t=tokens, p=positions, s=slots: runner.decode(t, p, s), reps=10)
        runner.use_kernel = True
        release_rows(runner, slots)
        rows.append(row)
    return rows


def probe_encoder(engine: NativeEngine, images: list) -> list[dict]:
    rows = []
    for mode in ("base", "gundam"):
        t0 = time.perf_counter()
        inputs = [prepare_image(im, mode, normalize=False) for im in images]
        prep = (time.perf_counter() - t0) / len(images)
        for views in (8, 16, 32, 64):
            try:
                ms = cuda_ms(lambda i=inputs, v=views: engine.model.encode_images(
                    i, max_views_per_call=v), reps=3)
            except torch.cuda.OutOfMemoryError:  # beside the engine's KV cache
                torch.cuda.empty_cache()
                ms = float("nan")
            rows.append({"mode": mode, "pages": len(images), "views_per_call": views,
                         "encode_ms_per_page": ms / len(images),
                         "prepare_ms_per_page_one_thread": 1000 * prep})
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            engine.model.encode_images(inputs, max_views_per_call=16)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=18)
        print(f"--- encoder kernels, {mode}, {len(images)} pages\n{table}", flush=True)
    return rows


def run_mix(engine: NativeEngine, images: list, lengths: list[int], mode: str, n: int,
            seed: int) -> dict:
    rng = random.Random(seed)
    drawn = [rng.choice(lengths) for _ in range(n)]
    requests = [PageRequest(image=images[i % len(images)], mode=mode, max_new_tokens=m)
                for i, m in enumerate(drawn)]
    engine.stats = dict.fromkeys(engine.stats, 0)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    results = engine.generate(requests)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    tokens = sum(r.num_output_tokens for r in results)
    assert [r.num_output_tokens for r in results] == drawn, "a page did not decode its length"
    steps = engine.stats["decode_steps"] or 1
    return {
        "mode": mode, "pages": n, "wall_s": round(wall, 2), "pages_per_s": round(n / wall, 2),
        "output_tokens_per_s": round(tokens / wall), "mean_length": tokens / n,
        "mean_running_batch": round(tokens / steps, 1),
        "mean_decode_rows": round(engine.stats["decode_rows"] / steps, 1),
        "phases_s": {k: round(v, 2) for k, v in engine.stats.items()},
        "ms_per_step": round(1000 * engine.stats["decode_s"] / steps, 2),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        "slots": engine.runner.num_slots,
        "queue_s_median": statistics.median(r.timings.get("queue", 0) for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--lengths", required=True, help="JSON list of real output token counts")
    ap.add_argument("--pages", type=int, default=512)
    ap.add_argument("--modes", nargs="+", default=["gundam", "base"])
    ap.add_argument("--probes", nargs="+", default=["attention", "steps", "encoder", "mix"])
    ap.add_argument("--cold", action="store_true", help="also time the first (cold) mix run")
    ap.add_argument("--moe-backend", default="auto", help="EngineConfig.moe_backend")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)  # the probes call the model directly
    lengths = load_lengths(args.lengths)
    report: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name()}
    print(report, flush=True)
    if "attention" in args.probes:
        report["attention"] = probe_attention(lengths, 900)
        print("attention", report["attention"], flush=True)
        torch.cuda.empty_cache()  # the engine sizes its cache from free memory
    cfg = DeepseekOCRConfig()
    engine = NativeEngine(random_model(cfg), load_tokenizer(args.tokenizer),
                          EngineConfig(suppress_eos=True, detect_loops=False,
                                       moe_backend=args.moe_backend))
    print(f"slots {engine.runner.num_slots} x {engine.runner.max_len}", flush=True)
    images = [page_image(i) for i in range(16)]
    for im in images:
        im.load()
    if "steps" in args.probes:
        report["steps"] = probe_steps(engine, lengths, 900)
        print("steps", report["steps"], flush=True)
    if "encoder" in args.probes:
        report["encoder"] = probe_encoder(engine, images)
        print("encoder", report["encoder"], flush=True)
    if "mix" in args.probes:
        report["mix"] = []
        for i, mode in enumerate(args.modes):
            runs = (("cold", 1), ("warm", 2)) if args.cold or i == 0 else (("warm", 2),)
            for name, seed in runs:
                row = run_mix(engine, images, lengths, mode, args.pages, seed=seed)
                row["run"] = name
                report["mix"].append(row)
                print("mix", row, flush=True)
    if args.out:
        json.dump(report, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
