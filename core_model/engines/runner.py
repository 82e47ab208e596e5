"""The only part of the native engine that touches the device: KV cache, prefill, decode step.

Prefill runs a few right-padded prompts at once and writes their keys and values into the
blocks of their slots (`kv_cache.py`: a paged cache). A decode step runs one token for each
of the given slots (the running pages, in any order: rows are compacted, so a batch is as
large as the number of running pages, rounded up to a bucket), attending to cache positions
`<= position`: with the Triton kernel (`core_model/decode_attention.py`, CUDA) each row reads
its own length and each batch bucket is captured once in a CUDA graph; without it, masked SDPA
reads a span rounded up to `kv_block`, one graph per (batch bucket, span). `eager=True` runs
the same code without graphs. Rows that pad a bucket use the cache's padding slot, which
writes to a scratch block.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable

import torch

from core_model import decode_attention
from core_model.engines.kv_cache import BlockAllocator, KVCache
from core_model.model import DeepseekOCRForCausalLM

log = logging.getLogger(__name__)

_SMALL_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)


def batch_buckets(num_slots: int) -> list[int]:
    """Decode batch sizes that get their own graph: 1, 2, 4, 8, 16, ... up to num_slots
    (every 64 past 256)."""
    buckets = [b for b in _SMALL_BUCKETS if b < num_slots]
    buckets += list(range(256 + 64, num_slots, 64))
    return buckets + [num_slots]


class ModelRunner:
    def __init__(
        self,
        model: DeepseekOCRForCausalLM,
        *,
        num_slots: int,
        num_blocks: int,
        max_len: int,
        eager: bool = False,
        kv_block: int = 128,
        attention: str = "auto",
    ) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.cache = KVCache(model.config.decoder, num_blocks, max_seqs=num_slots,
                             max_len=max_len, device=self.device, dtype=self.dtype)
        self.cache.bind(model)
        self.blocks = BlockAllocator(self.cache)
        self.num_slots, self.max_len, self.kv_block = num_slots, max_len, kv_block
        self.pad_slot = self.cache.pad_slot
        self.use_graphs = not eager and self.device.type == "cuda"
        if attention not in ("auto", "kernel", "sdpa"):
            raise ValueError(f"attention must be 'auto', 'kernel' or 'sdpa', not {attention!r}")
        has_kernel = decode_attention.is_available(self.device)
        if attention == "kernel" and not has_kernel:
            raise ValueError("attention='kernel' needs Triton and a CUDA device")
        self.use_kernel = has_kernel and attention != "sdpa"
        self.buckets = batch_buckets(num_slots)
        self.tokens = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        self.slots = torch.full((num_slots,), self.pad_slot, dtype=torch.long, device=self.device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._no_graph: set[tuple[int, int]] = set()
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        # Turns a step's logits (B, V) and its slots (B,) into next tokens (B,); captured in
        # the same graph as the step. It must write no state but the logits (the capture's
        # warm-up runs it once more). None: `decode` returns the logits.
        self.sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @torch.inference_mode()
    def prefill(self, embeds: list[torch.Tensor], slots: list[int]) -> torch.Tensor:
        """Logits (n, V) float32 after the last token of each prompt embedding (T_i, hidden).
        Each slot must own the blocks for its prompt (`blocks.grow`)."""
        lengths = [e.shape[0] for e in embeds]
        T = max(lengths)
        x = torch.zeros(len(embeds), T, embeds[0].shape[1], device=self.device, dtype=self.dtype)
        for row, e in enumerate(embeds):
            x[row, : e.shape[0]] = e  # right padding: never read after the prompt
        positions = torch.arange(T, device=self.device).expand(len(embeds), T)  # (n, T)
        self.blocks.flush()
        n = torch.tensor(lengths).to(self.device, non_blocking=True)  # no wait for the queue
        ctx = self.cache.prefill_context(torch.tensor(slots).to(self.device, non_blocking=True), n, T)
        hidden = self.model(x, positions, ctx)
        last = n - 1
        rows = torch.arange(len(embeds), device=self.device)
        return self.model.compute_logits(hidden[rows, last]).float()

    def bucket_for(self, num_rows: int) -> int:
        return self.buckets[bisect.bisect_left(self.buckets, num_rows)]

    def span_for(self, max_position: int) -> int:
        span = -(-(max_position + 1) // self.kv_block) * self.kv_block
        return min(span, self.max_len)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The next token (B,) of each row through `sampler`, or without one the logits (B, V)
        float32. The result is a graph's static output: read it before the next call.

        `tokens`, `positions`, `slots`: (B,) on the host or the device; B must be a bucket
        size; padding rows use `pad_slot`. Each slot must own the block of its position.
        """
        batch = tokens.shape[0]
        span = self.max_len if self.use_kernel else self.span_for(int(positions.max()))
        self.blocks.flush()
        self.tokens[:batch].copy_(tokens, non_blocking=True)
        self.positions[:batch].copy_(positions, non_blocking=True)
        self.slots[:batch].copy_(slots, non_blocking=True)
        key = (batch, span)
        if not self.use_graphs or key in self._no_graph:
            return self._step(batch, span)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(batch, span)
            except RuntimeError as exc:  # an op that cannot be captured: stay eager here
                log.warning("decode step (batch %d, span %d) runs eager: %s", batch, span, exc)
                self._no_graph.add(key)
                return self._step(batch, span)
        graph, out = self._graphs[key]
        graph.replay()
        return out

    def _step(self, batch: int, span: int) -> torch.Tensor:
        tokens, positions, slots = self.tokens[:batch], self.positions[:batch], self.slots[:batch]
        x = self.model.embed(tokens[:, None])  # (B, 1, hidden)
        ctx = self.cache.decode_context(slots, positions, use_kernel=self.use_kernel, span=span)
        hidden = self.model(x, positions[:, None], ctx)
        logits = self.model.compute_logits(hidden[:, 0]).float()
        return logits if self.sampler is None else self.sampler(logits, slots)

    def _capture(self, batch: int, span: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm-up on a side stream (lazy initialisation, autotuning) as CUDA graphs require.
        # Re-running the step is harmless: it rewrites the same keys at the same positions.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._step(batch, span)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the encoder's thread may be working on the GPU meanwhile.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            out = self._step(batch, span)
        return graph, out

    @torch.inference_mode()
    def capture_all(self) -> None:
        """Capture the decode step of every batch bucket now (length-aware attention: one
        graph a bucket), so no capture happens later beside other GPU work."""
        if not (self.use_graphs and self.use_kernel) or self._graphs:
            return
        for batch in self.buckets:
            zeros = torch.zeros(batch, dtype=torch.long)
            self.decode(zeros, zeros, torch.full((batch,), self.pad_slot))
