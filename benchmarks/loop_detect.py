"""Time one `LoopDetector` check (the work `update` does on one call in `check_every`).

    python benchmarks/loop_detect.py --device cuda            # B=256, L=8192
    python benchmarks/loop_detect.py --device cpu --batch 8

Needs torch only. Prints milliseconds per check and per decode step (check / check_every).
"""

from __future__ import annotations

import argparse
import time

import torch

from core_model.engines.loop_detect import DET_CLOSE_ID, DET_OPEN_ID, LoopDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 120_000, (args.batch, args.length), generator=gen)
    tokens[:, ::50] = DET_OPEN_ID  # boxes every 50 ids, as in layout output
    tokens[:, 20::50] = DET_CLOSE_ID
    tokens = tokens.to(args.device)
    lengths = torch.full((args.batch,), args.length, device=args.device)
    detector = LoopDetector()
    for _ in range(3):  # warm up
        detector.match_fraction(tokens, lengths)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.repeat):
        detector.match_fraction(tokens, lengths)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    per_check = (time.perf_counter() - start) / args.repeat * 1000
    print(f"{args.device} B={args.batch} L={args.length}: {per_check:.2f} ms per check, "
          f"{per_check / detector.check_every:.3f} ms per decode step (check_every="
          f"{detector.check_every})")


if __name__ == "__main__":
    main()
