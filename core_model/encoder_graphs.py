"""Small DeepEncoder calls replayed as CUDA graphs.

One DeepEncoder call (SAM, CLIP, projector over a batch of views) is several hundred kernel
launches. For a few views (a figure re-read, a rerun, the last pages of a stream) the host
takes longer to launch them than the GPU to run them, and the decode steps wait meanwhile:
on the H200 a Converter's calls of 1 to 4 Base views took ~90 ms each, for ~5 ms of GPU work
a view (RESULTS.md, round 11). `EncoderGraphs` captures the call once per view size and
bucket of 1, 2, 4 or 8 views, and replays it: a call of n views is padded up to its bucket
(views are independent, so the padding rows change nothing) and costs one launch. Larger
calls keep the eager path, where the GPU's work outweighs the launches.

All graphs share one memory pool: they run one at a time, on the engine's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8)  # views per captured call


class EncoderGraphs:
    """`encode` ((B, 3, S, S) views -> (B, ...) features) with graphs for small B on CUDA.

    Args:
        encode: the eager call, e.g. `deep_encoder.encode_views` bound to its modules.
        buckets: the batch sizes captured (a call is padded up to the next one).
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor],
                 buckets: tuple[int, ...] = BUCKETS) -> None:
        self.encode = encode
        self.buckets = tuple(sorted(buckets))
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._eager: set[tuple] = set()  # keys that could not be captured
        self._pool = None
        self.replays = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        n = len(pixels)
        if not pixels.is_cuda or n > self.buckets[-1] or torch.is_grad_enabled():
            return self.encode(pixels)
        bucket = next(b for b in self.buckets if b >= n)
        key = (bucket, *pixels.shape[1:], pixels.dtype, pixels.device)
        entry = self._graphs.get(key)
        if entry is None:
            if key in self._eager:
                return self.encode(pixels)
            entry = self._capture(key)
            if entry is None:
                return self.encode(pixels)
        graph, inputs, outputs = entry
        inputs[:n].copy_(pixels)
        graph.replay()
        self.replays += 1
        return outputs[:n].clone()  # the next replay overwrites the static output

    def capture(self, view_shape: tuple[int, int, int], dtype: torch.dtype,
                device: torch.device) -> None:
        """Capture every bucket for views of `view_shape` (C, S, S) now, largest first, so
        none is captured later beside other GPU work."""
        with torch.inference_mode():
            for bucket in reversed(self.buckets):
                key = (bucket, *view_shape, dtype, device)
                if key not in self._graphs and key not in self._eager:
                    self._capture(key)

    def _capture(self, key: tuple) -> tuple | None:
        bucket, *shape, dtype, device = key
        try:
            inputs = torch.zeros(bucket, *shape, dtype=dtype, device=device)
            # Warm-up on a side stream (lazy initialisation, library workspaces), as CUDA
            # graphs require; then the capture, which allocates from the shared pool.
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                self.encode(inputs)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: preparing threads may be making page views on the GPU meanwhile.
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                outputs = self.encode(inputs)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # stay eager for this key
            log.warning("DeepEncoder calls of %d views of %s run eager: %s", bucket, shape, exc)
            self._eager.add(key)
            return None
        self._pool = graph.pool()
        self._graphs[key] = entry = (graph, inputs, outputs)
        return entry
