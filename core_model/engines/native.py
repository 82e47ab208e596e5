"""The native engine: DeepSeek-OCR in plain PyTorch, many pages decoded at once.

Pages wait in a queue; each free KV-cache slot takes the next one (continuous batching). A
newly admitted group has its images encoded in one DeepEncoder call (pages and views
batched), its prompts built with the vision-token count, and is prefilled in right-padded
chunks. Then every running page advances one token per decode step (one CUDA graph per batch
bucket and cache span), greedy argmax after the logits rules (no-repeat n-gram), and stops on
EOS, its token limit, or a detected loop. Results carry text, token ids, finish reason,
token counts and per-stage timings. `NativeEngine(model, tokenizer, config)` wraps a loaded
model; `NativeEngine.from_pretrained(path)` loads one.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import deque
from collections.abc import Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core_model.checkpoint import load_pretrained
from core_model.engines.interface import PageRequest, PageResult, TokenCallback
from core_model.engines.kv_cache import KVCache
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import NoRepeatNGram
from core_model.engines.runner import ModelRunner
from core_model.engines.sequence import Sequence
from core_model.model import DeepseekOCRForCausalLM
from core_model.preprocess import prepare_image
from core_model.prompt import build_prompt_ids

TD_IDS = (128821, 128822)  # <td>, </td>: exempt from the n-gram rule as in the vLLM scripts


@dataclass
class EngineConfig:
    max_batch_size: int = 64  # KV-cache slots, further capped by free memory
    max_new_tokens: int = 8192
    max_len: int | None = None  # tokens per slot; None: the model's max positions
    eager: bool = False  # True: no CUDA graphs
    moe_backend: str = "auto"  # see core_model.moe.BACKENDS
    kv_block: int = 128  # decode attends over the cache rounded up to this many positions
    max_views_per_call: int = 16  # DeepEncoder views per call
    max_prefill_tokens: int = 16384  # padded prompt tokens per prefill chunk
    max_admit: int = 64  # pages encoded and prefilled per scheduling round
    # Threads preparing page images while the GPU works: one per core, up to 16 (measured).
    preprocess_workers: int = field(default_factory=lambda: min(16, os.cpu_count() or 1))
    memory_fraction: float = 0.9  # of free device memory the KV cache may take
    suppress_eos: bool = False  # benchmark: never stop on EOS
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 20
    ngram_window: int | None = 50
    detect_loops: bool = True


class NativeEngine:
    name = "native"

    def __init__(self, model: DeepseekOCRForCausalLM, tokenizer: Any, config: EngineConfig | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = cfg = config or EngineConfig()
        dec = model.config.decoder
        self.eos_id = dec.eos_token_id
        model.pack()
        model.set_moe_backend(cfg.moe_backend)
        max_len = min(cfg.max_len or dec.max_position_embeddings, dec.max_position_embeddings)
        self.runner = ModelRunner(
            model,
            num_slots=self._num_slots(max_len),
            max_len=max_len,
            eager=cfg.eager,
            kv_block=cfg.kv_block,
        )
        self.ngram = (NoRepeatNGram(cfg.no_repeat_ngram_size, window=cfg.ngram_window,
                                    whitelist_ids=TD_IDS)
                      if cfg.no_repeat_ngram_size > 0 else None)
        self.loop_detector = LoopDetector() if cfg.detect_loops else None
        S, dev = self.runner.num_slots, self.runner.device
        self.out_tokens = torch.zeros(S, max_len, dtype=torch.long, device=dev)
        self.out_lengths = torch.zeros(S, dtype=torch.long, device=dev)
        self.stats = {"encode_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0, "decode_steps": 0}
        self._pool: ThreadPoolExecutor | None = None  # made on first use
        self.runner.sampler = self._pick  # captured in the decode graphs with the model

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_size: int = 64,
        max_new_tokens: int = 8192,
        **options: Any,
    ) -> NativeEngine:
        """Load a checkpoint folder (config.json, *.safetensors, tokenizer.json) or repo id.

        Args:
            path: What `core_model.checkpoint.load_pretrained` accepts.
            device: Default: CUDA when available, else CPU.
            dtype: Default: bfloat16 on CUDA, float32 on the CPU.
            max_batch_size: KV-cache slots (pages decoded at once), capped by free memory.
            max_new_tokens: Default output limit per page.
            **options: Further `EngineConfig` fields (eager, moe_backend, suppress_eos...).
        """

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model, _, tokenizer = load_pretrained(
            path, device=device, dtype=dtype, model_factory=DeepseekOCRForCausalLM
        )
        model.to(device)  # non-persistent buffers (RoPE tables) follow the weights
        config = EngineConfig(max_batch_size=max_batch_size, max_new_tokens=max_new_tokens, **options)
        return cls(model, tokenizer, config)

    def _num_slots(self, max_len: int) -> int:
        wanted = self.config.max_batch_size
        device = next(self.model.parameters()).device
        if device.type != "cuda":
            return wanted

        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * self.config.memory_fraction) - 4 * 2**30  # graphs, activations
        dtype = next(self.model.parameters()).dtype
        fits = KVCache.num_slots_for_memory(self.model.config.decoder, max_len, budget, dtype)
        if fits < 1:
            raise RuntimeError(f"no room for one KV-cache slot of {max_len} tokens on {device}")
        return min(wanted, fits)

    # ---- the Engine interface -------------------------------------------------------------

    def generate(self, requests: Seq[PageRequest], *, on_token: TokenCallback | None = None) -> list[PageResult]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.preprocess_workers, "dsocr-preprocess")
        seqs = []
        for i, req in enumerate(requests):
            seq = Sequence(i, req.max_new_tokens or self.config.max_new_tokens, prompt=req.prompt, key=req.key)
            # Prepared in worker threads (PIL and torch release the GIL): pages later in the
            # queue are resized and tiled while the GPU encodes and decodes earlier ones.
            seq.pending_image = self._pool.submit(prepare_image, req.image, req.mode)
            seqs.append(seq)
        self.run(seqs, on_token=on_token)
        return [self.result(s) for s in seqs]

    def result(self, seq: Sequence) -> PageResult:
        return PageResult(
            text=self.tokenizer.decode(seq.output_ids) if seq.output_ids else "",
            token_ids=list(seq.output_ids),
            finish_reason=seq.finish_reason or "error",
            num_vision_tokens=seq.num_vision_tokens,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=len(seq.output_ids),
            timings=dict(seq.timings),
            error=seq.error,
            key=seq.key,
        )

    def generate_ids(
        self,
        prompts: Seq[Seq[int]],
        *,
        max_new_tokens: int | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[PageResult]:
        """Decode text-only prompts given as token ids (tests, benchmarks, debugging)."""
        limit = max_new_tokens or self.config.max_new_tokens
        seqs = [Sequence(i, limit, prompt_ids=list(p)) for i, p in enumerate(prompts)]
        self.run(seqs, on_token=on_token)
        return [self.result(s) for s in seqs]

    # ---- the step loop ---------------------------------------------------------------------

    def run(self, seqs: list[Sequence], *, on_token: TokenCallback | None = None) -> None:
        """Decode every sequence to its end; results are left on the sequences."""
        waiting = deque(seqs)
        free = list(range(self.runner.num_slots))
        running: dict[int, Sequence] = {}
        start = time.perf_counter()
        while waiting or running:
            admitted = []
            while waiting and free and len(admitted) < self.config.max_admit:
                seq = waiting.popleft()
                seq.slot = heapq.heappop(free)
                seq.timings["queue"] = time.perf_counter() - start
                admitted.append(seq)
            if admitted:
                self._prefill(admitted, on_token)
                for seq in admitted:
                    running[seq.slot] = seq  # finished ones leave below, before any decode
                self._release(running, free, start)
            if running:
                self._decode(running, on_token)
                self._release(running, free, start)

    @staticmethod
    def _release(running: dict[int, Sequence], free: list[int], start: float) -> None:
        for slot in [s for s, seq in running.items() if seq.is_finished]:
            seq = running.pop(slot)
            seq.timings["total"] = time.perf_counter() - start - seq.timings["queue"]
            heapq.heappush(free, slot)

    def _prepare(self, seqs: list[Sequence]) -> None:
        """Encode images (one DeepEncoder call for the group) and build the prompts."""
        for s in seqs:
            if s.pending_image is None:
                continue
            t0 = time.perf_counter()
            try:
                s.image = s.pending_image.result()
            except Exception as exc:  # one bad page never stops the others
                s.fail(f"page {s.index}: cannot prepare the image: {exc}")
            s.pending_image = None
            s.timings["preprocess_wait"] = time.perf_counter() - t0
        to_encode = [s for s in seqs if s.image is not None and s.vision_embeds is None]
        if to_encode:
            t0 = time.perf_counter()
            try:
                embeds = self.model.encode_images(
                    [s.image for s in to_encode], max_views_per_call=self.config.max_views_per_call
                )
            except Exception as exc:
                for s in to_encode:
                    s.fail(f"page {s.index}: vision encoder failed: {exc}")
                embeds = []
            spent = time.perf_counter() - t0
            self.stats["encode_s"] += spent
            share = spent / len(to_encode)
            for s, e in zip(to_encode, embeds, strict=False):
                s.vision_embeds, s.timings["encode"] = e, share
        for s in seqs:
            if s.is_finished or s.prompt_ids is not None:
                continue
            n = 0 if s.vision_embeds is None else s.vision_embeds.shape[0]
            built = build_prompt_ids(self.tokenizer, s.prompt, n)
            s.prompt_ids, s.image_mask = list(built.ids), list(built.image_mask)
        for s in seqs:
            if s.is_finished:
                continue
            s.num_vision_tokens = sum(s.image_mask) if s.image_mask else 0
            s.max_new_tokens = min(s.max_new_tokens, self.runner.max_len - s.num_prompt_tokens)
            if s.max_new_tokens < 1:
                s.fail(
                    f"page {s.index}: prompt of {s.num_prompt_tokens} tokens leaves no room "
                    f"in a KV-cache slot of {self.runner.max_len} tokens"
                )

    @torch.inference_mode()
    def _prefill(self, seqs: list[Sequence], on_token: TokenCallback | None) -> None:
        self._prepare(seqs)
        live = sorted((s for s in seqs if not s.is_finished), key=lambda s: s.num_prompt_tokens)
        dev = self.runner.device
        while live:
            chunk = [live.pop(0)]
            while live and (len(chunk) + 1) * live[0].num_prompt_tokens <= self.config.max_prefill_tokens:
                chunk.append(live.pop(0))
            t0 = time.perf_counter()
            embeds = []
            for s in chunk:
                ids = torch.tensor(s.prompt_ids, device=dev)
                mask = torch.tensor(s.image_mask, device=dev) if s.image_mask else None
                vis = s.vision_embeds.to(dev) if s.vision_embeds is not None else None
                embeds.append(self.model.embed(ids, mask, vis))
            slots = [s.slot for s in chunk]
            self.out_lengths[slots] = 0
            logits = self.runner.prefill(embeds, slots)
            rows = torch.tensor(slots, device=dev)
            self._advance(chunk, self._pick(logits, rows), rows, on_token)
            spent = time.perf_counter() - t0
            self.stats["prefill_s"] += spent
            share = spent / len(chunk)
            for s in chunk:
                s.timings["prefill"] = share
                if s.is_finished:
                    s.timings["decode"] = 0.0
                else:
                    s.timings["decode_start"] = time.perf_counter()

    @torch.inference_mode()
    def _decode(self, running: dict[int, Sequence], on_token: TokenCallback | None) -> None:
        t0 = time.perf_counter()
        batch = self.runner.bucket_for(max(running) + 1)
        seqs = [running.get(row) for row in range(batch)]
        tokens = [s.output_ids[-1] if s else 0 for s in seqs]  # idle rows: token 0 at position 0
        positions = [s.num_prompt_tokens + len(s.output_ids) - 1 if s else 0 for s in seqs]
        next_tokens = self.runner.decode(torch.tensor(tokens), torch.tensor(positions))
        self._advance(seqs, next_tokens, self.runner.rows[:batch], on_token)
        self.stats["decode_s"] += time.perf_counter() - t0
        self.stats["decode_steps"] += 1

    def _pick(self, logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Each row's next token: the EOS rule, the n-gram rule, greedy argmax.

        Tensor ops only and no state written but `logits`, so the decode step's CUDA graph
        captures it together with the model (`ModelRunner.sampler`)."""
        lengths = self.out_lengths[slots]
        if self.config.suppress_eos or self.config.min_new_tokens:
            young = lengths < self.config.min_new_tokens
            if self.config.suppress_eos:
                young = torch.ones_like(young)
            logits[:, self.eos_id] = logits[:, self.eos_id].masked_fill(young, float("-inf"))
        if self.ngram is not None:
            self.ngram.apply(logits, self.out_tokens[slots], lengths)
        return logits.argmax(dim=-1)

    def _advance(self, seqs: list[Sequence | None], next_tokens: torch.Tensor,
                 slots: torch.Tensor, on_token: TokenCallback | None) -> None:
        """Record each row's next token and decide who stops."""
        lengths = self.out_lengths[slots]
        self.out_tokens[slots, lengths.clamp(max=self.out_tokens.shape[1] - 1)] = next_tokens
        self.out_lengths[slots] = lengths + 1
        looping = None
        if self.loop_detector is not None:
            looping = self.loop_detector.update(self.out_tokens[slots], lengths + 1).cpu()
        next_host = next_tokens.cpu().tolist()
        for row, s in enumerate(seqs):
            if s is None or s.is_finished:
                continue
            token = next_host[row]
            if token == self.eos_id:
                s.finish_reason = "eos"
            else:
                s.output_ids.append(token)
                if len(s.output_ids) >= s.max_new_tokens:
                    s.finish_reason = "length"
                elif looping is not None and bool(looping[row]):
                    s.finish_reason = "repetition"
                if on_token is not None:
                    on_token(s.index, token, self._text_delta(s, final=s.is_finished))
            if s.is_finished and "decode_start" in s.timings:
                s.timings["decode"] = time.perf_counter() - s.timings.pop("decode_start")

    def _text_delta(self, s: Sequence, *, final: bool = False) -> str:
        """New text since the last call; an incomplete multi-byte character is held back
        until it completes or the sequence ends."""
        before = self.tokenizer.decode(s.output_ids[s.prefix_offset : s.read_offset])
        after = self.tokenizer.decode(s.output_ids[s.prefix_offset :])
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            s.prefix_offset, s.read_offset = s.read_offset, len(s.output_ids)
            return after[len(before) :]
        return ""
