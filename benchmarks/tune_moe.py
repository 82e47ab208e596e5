"""Launch shapes of the fused MoE kernels, measured (GPU): one full-size layer, decode batches.

For each batch of N tokens (each routed to 6 of 64 experts, uniformly at random), the gate-up
and the down kernel of `core_model/fused_moe.py` are timed (CUDA graph of 10 launches,
replayed) over rows per block x `Tiles` (output columns, reduction step, warps, stages);
the table shows the current default against the best, and the JSON has every setting.

    PYTHONPATH=. python3 -m benchmarks.tune_moe --out tune_moe.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from functools import partial

import torch

from core_model import fused_moe as fm

HIDDEN, INTER, EXPERTS, TOP_K = 1280, 896, 64, 6


def routed(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.rand(n, EXPERTS, device=device).argsort(dim=1)[:, :TOP_K].int()
    weights = torch.rand(n, TOP_K, device=device)
    return weights, ids


def graph_ms(fn, reps: int = 10, replays: int = 5) -> float:
    fn()  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / (reps * replays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", nargs="+", type=int, default=[128, 256, 64, 512])
    ap.add_argument("--budget-s", type=float, default=150, help="stop sweeping after this long")
    ap.add_argument("--out")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    w_gate_up = torch.randn(EXPERTS, 2 * INTER, HIDDEN, device=dev, dtype=torch.bfloat16) * 0.02
    w_down = torch.randn(EXPERTS, HIDDEN, INTER, device=dev, dtype=torch.bfloat16) * 0.02
    settings = [fm.Tiles(bn, bk, warps, stages) for bn, bk, (warps, stages) in itertools.product(
        (64, 128), (64, 128, 256), ((4, 3), (4, 4), (8, 3), (8, 4)))]
    rows, started = [], time.perf_counter()
    for n in args.tokens:
        x = torch.randn(n, HIDDEN, device=dev, dtype=torch.bfloat16)
        weights, ids = routed(n, dev)
        reference = fm.fused_moe(x, w_gate_up, w_down, weights, ids)
        default_m = fm.block_m_for(n * TOP_K, EXPERTS)
        for block_m in (16, 32, 64):
            a = fm.align_triton(ids, EXPERTS, block_m)
            act = torch.empty(a.pair_of_row.numel(), INTER, device=dev, dtype=x.dtype)
            y = torch.empty(n * TOP_K, HIDDEN, device=dev, dtype=x.dtype)
            default_tiles = fm.Tiles(fm.BLOCK_N, fm.block_k_for(block_m), 4, 3)
            for kernel in ("gate_up", "down"):
                for t in settings:
                    if time.perf_counter() - started > args.budget_s:
                        break
                    kernel_fn = (partial(fm._gate_up_act, x, w_gate_up, a, TOP_K, act)
                                 if kernel == "gate_up" else partial(fm._down, act, w_down, a, y))
                    fn = partial(kernel_fn, t=t)
                    try:
                        ms = graph_ms(fn)
                    except Exception as exc:  # e.g. out of shared memory for this shape
                        rows.append({"tokens": n, "block_m": block_m, "kernel": kernel,
                                     "tiles": list(t), "error": type(exc).__name__})
                        continue
                    rows.append({"tokens": n, "block_m": block_m, "kernel": kernel,
                                 "tiles": list(t), "ms": round(ms, 4),
                                 "default": block_m == default_m and t == default_tiles})
        # the best pair must still compute the same thing
        best = {k: min((r for r in rows if r["tokens"] == n and r["kernel"] == k and "ms" in r),
                       key=lambda r: r["ms"]) for k in ("gate_up", "down")}
        if best["gate_up"]["block_m"] == best["down"]["block_m"]:
            out = fm.fused_moe(x, w_gate_up, w_down, weights, ids, block_m=best["down"]["block_m"],
                               tiles=(fm.Tiles(*best["gate_up"]["tiles"]), fm.Tiles(*best["down"]["tiles"])))
            err = (out.float() - reference.float()).abs().max().item()
            rows.append({"tokens": n, "check": "best tiles against default", "max_abs_err": err})
        print(f"tokens {n}: done at {time.perf_counter() - started:.0f} s", flush=True)
    print(f"\n{'tokens':>6} {'kernel':8} {'default ms':>10} {'best ms':>8}  best (block_m, tiles)")
    for n in args.tokens:
        for kernel in ("gate_up", "down"):
            mine = [r for r in rows if r.get("tokens") == n and r.get("kernel") == kernel and "ms" in r]
            if not mine:
                continue
            default = next((r["ms"] for r in mine if r["default"]), float("nan"))
            best = min(mine, key=lambda r: r["ms"])
            print(f"{n:6d} {kernel:8} {default:10.4f} {best['ms']:8.4f}  {best['block_m']}, {best['tiles']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "rows": rows}, f, indent=0)


if __name__ == "__main__":
    main()
