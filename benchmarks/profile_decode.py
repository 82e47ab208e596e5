"""Kernel-level profile of one decode step of the full-size model (GPU; random bf16 weights).

Prints, per MoE backend, the CUDA kernels of one eager decode step at the given batch and
cache span, by total device time. Used to decide where the step's time goes.

    PYTHONPATH=. python3 benchmarks/profile_decode.py --batch 256 --span 512
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.throughput import NoTokenizer, held_rows, random_model
from core_model.config import DeepseekOCRConfig
from core_model.engines.native import EngineConfig, NativeEngine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--span", type=int, default=512)
    ap.add_argument("--backends", nargs="+", default=["dense", "grouped"])
    ap.add_argument("--rows", type=int, default=22)
    ap.add_argument("--ngram", type=int, default=20, help="no_repeat_ngram_size (the engine's: 20)")
    args = ap.parse_args()
    model = random_model(DeepseekOCRConfig())
    engine = NativeEngine(model, NoTokenizer(), EngineConfig(
        max_batch_size=args.batch, max_len=args.span, eager=True, no_repeat_ngram_size=args.ngram,
        detect_loops=False))
    tokens = torch.randint(3, 1000, (args.batch,))
    positions = torch.full((args.batch,), args.span - 1)
    slots = held_rows(engine.runner, positions)
    for backend in args.backends:
        model.set_moe_backend(backend)
        for _ in range(3):
            engine.runner.decode(tokens, positions, slots)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            engine.runner.decode(tokens, positions, slots)
            torch.cuda.synchronize()
        print(f"\n=== backend {backend}, batch {args.batch}, span {args.span}")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows,
                                        max_name_column_width=70))
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1000
        print(f"{len(kernels)} kernels a step, {busy:.2f} ms of device time")


if __name__ == "__main__":
    main()
