"""The native engine: DeepSeek-OCR in plain PyTorch, pages streamed through one decode batch.

`submit(request)` queues a page and returns a future at once. One engine thread owns the GPU
and runs the step loop: pages waiting for a KV-cache slot have their images prepared ahead in
worker threads (resize, pad, tile; pixel files in preparing processes); between decode steps prepared
pages go through the DeepEncoder in groups that fill its calls, and have their prompts built
with their vision-token counts; a group of such ready pages is admitted
(prefilled in right-padded chunks) when slots and KV-cache blocks are free, and every running
page advances one token per decode step (one CUDA graph per batch bucket; attention reads
each row's own length), greedy argmax after the logits rules (no-repeat n-gram). While the
running pages stay the same, each step is launched before the last one's tokens are read
(they feed it on the device), so the host's bookkeeping overlaps the GPU's work. A page stops
on EOS, its token limit or a detected loop, and its future completes right then: new pages
take its place at the next admission (in groups: `min_admit`, `admit_wait_s`) while the
others keep decoding (continuous batching, no barrier). The KV cache is paged
(`kv_cache.py`): a page holds blocks for the positions it has, so memory follows real page
lengths; when a growing page finds no free block, the newest page is preempted (its blocks
freed; it is re-admitted later, its prompt and output so far prefilled again, and goes on
where it stopped).
`NativeEngine(model, tokenizer, config)` wraps a loaded model;
`NativeEngine.from_pretrained(path)` loads one.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Sequence as Seq
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from core_model.checkpoint import load_pretrained
from core_model.device_views import prepare_on_device
from core_model.engines.interface import (
    EngineClosed,
    PageRequest,
    PageResult,
    PageTokenCallback,
    TokenCallback,
    generate_all,
)
from core_model.engines.kv_cache import BLOCK_SIZE, KVCache, blocks_for
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import NoRepeatNGram
from core_model.engines.page_inputs import encode_ready, fit_to_slot, start_preparing
from core_model.engines.preparing import PreparingProcesses
from core_model.engines.runner import ModelRunner
from core_model.engines.sequence import Sequence
from core_model.model import DeepseekOCRForCausalLM
from core_model.modes import DEEPSEEK_OCR, MODES_BY_FAMILY, get_mode

log = logging.getLogger(__name__)

TD_IDS = (128821, 128822)  # <td>, </td>: exempt from the n-gram rule as in the vLLM scripts
# An engine thread with nothing to do ends after this long (a later submit starts another),
# so an engine dropped without `close()` holds no thread, and its model is freed.
IDLE_EXIT_S = 2.0


@dataclass
class EngineConfig:
    max_batch_size: int = 512  # pages decoded at once, further capped by free memory
    max_new_tokens: int = 8192
    max_len: int | None = None  # positions per page; None: the model's max positions
    kv_blocks: int | None = None  # KV-cache blocks; None: from free memory (CUDA)
    eager: bool = False  # True: no CUDA graphs
    moe_backend: str = "auto"  # see core_model.moe.BACKENDS
    attention: str = "auto"  # decode attention: "kernel" (Triton, CUDA), "sdpa", "auto"
    kv_block: int = 128  # masked-SDPA decode (no Triton): span rounded up to this
    # DeepEncoder views per call: Gundam 16.9 ms a page at 32 against 17.7 at 16 on an H200,
    # beside a full KV cache (64: 16.8). A call out of memory is retried with half as many.
    # Pages are encoded in groups of as many (one global view each; Gundam's tiles go in
    # calls of their own); while others decode, a smaller group waits up to `admit_wait_s`.
    max_views_per_call: int = 32
    max_prefill_tokens: int = 16384  # padded prompt tokens per prefill chunk
    max_admit: int = 64  # pages prefilled per admission
    # While pages decode, new pages are admitted in groups of `min_admit` ready (encoded)
    # pages (an admission stops the decode steps for its prefill, which costs much more per
    # page in small groups), or once the first ready has waited `admit_wait_s`.
    min_admit: int = 32
    admit_wait_s: float = 0.5
    # While a group of new pages is on its way in (at least `min_admit` waiting: being
    # prepared or encoded) and slots are free for it, the next decode step waits for it, up to
    # this long after the last step. A decode step costs about the same for 30 pages as for
    # 300: steps taken while pages stream in are spent on a small batch, and the pages
    # admitted after them end that many steps later (a 512-page PDF fed at 150 pages/s: 3,235
    # steps where the longest page needs 2,680). Off by default: on the H200 at 0.25 s it
    # cut those steps (Base 3,524 -> 3,287, Gundam 3,570 -> 3,084) but not the wall time
    # (Base +1%, Gundam -6%, one run each; RESULTS.md, round 7); with the Converter's
    # processes up before its pages and encoder graphs, Base 94% -> 93% (round 11). 0: never
    # wait.
    fill_wait_s: float = 0.0
    # Threads preparing page images while the GPU works: one per core, up to 8. A page takes
    # 40 ms (Base) to 83 ms (Gundam) of one H200 host core, so 8 keep ~100 pages/s ahead of
    # an engine doing 15-25; more only take cores from the engine's own thread (16 preparing
    # 512 Gundam pages at once: its encoder 26 ms a page against 17.7 alone).
    preprocess_workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    # Processes those threads hand lazy page images to (files of pixels from the loading
    # processes: `preparing.py`), so that PIL's steps that hold the GIL run outside this
    # process. None: one per preparing thread on a CUDA device (POSIX), none on the CPU; 0
    # set later stops handing pages to them.
    prepare_processes: int | None = None
    # Page views resized on the device (`core_model/device_views.py`: the same bits as on the
    # CPU) for pages whose RGB pixels are at hand, so a page's preparation takes ~1 ms of a
    # host core instead of 40-110 ms. None: on a CUDA device, for lazy images that read
    # without the GIL (pixel files; images in memory stay on the CPU: `_views_on_device`);
    # True: every page that can; False: none (threads and processes above). Read per page.
    resize_on_device: bool | None = None
    # DeepEncoder calls of 1 to 8 views replayed as CUDA graphs (`encoder_graphs.py`): such
    # calls (figure re-reads, reruns, a stream's last pages) are launch-bound, and the decode
    # steps wait for them. CUDA only, not with `eager`; views of 1024 and 640 pixels (the
    # Base and Gundam views) captured at start, others on first use.
    encoder_graphs: bool = True
    memory_fraction: float = 0.9  # of free device memory the KV cache may take
    suppress_eos: bool = False  # benchmark: never stop on EOS
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 20
    ngram_window: int | None = 50
    detect_loops: bool = True
    # Launch each decode step before reading the last one's tokens (the GPU never waits for
    # the host's bookkeeping) when the running pages stay the same; False: one step at a time.
    overlap: bool = True


class NativeEngine:
    name = "native"
    lazy_images = True  # a `LazyImage` is read on a preparing thread, not the caller's

    def __init__(self, model: DeepseekOCRForCausalLM, tokenizer: Any, config: EngineConfig | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = cfg = config or EngineConfig()
        dec = model.config.decoder
        self.eos_id = dec.eos_token_id
        model.pack()
        model.set_moe_backend(cfg.moe_backend)
        max_len = min(cfg.max_len or dec.max_position_embeddings, dec.max_position_embeddings)
        num_slots, num_blocks = self._cache_size(max_len)
        self.runner = ModelRunner(
            model,
            num_slots=num_slots,
            num_blocks=num_blocks,
            max_len=max_len,
            eager=cfg.eager,
            kv_block=cfg.kv_block,
            attention=cfg.attention,
        )
        self.concurrency = self.runner.num_slots  # pages decoded at once
        self.family = getattr(model, "family", DEEPSEEK_OCR)
        self.supported_modes = tuple(MODES_BY_FAMILY[self.family])
        self.ngram = (NoRepeatNGram(cfg.no_repeat_ngram_size, window=cfg.ngram_window,
                                    whitelist_ids=TD_IDS)
                      if cfg.no_repeat_ngram_size > 0 else None)
        self.loop_detector = LoopDetector() if cfg.detect_loops else None
        S, dev = self.runner.num_slots + 1, self.runner.device  # + the padding slot
        self.out_tokens = torch.zeros(S, max_len, dtype=torch.long, device=dev)
        self.out_lengths = torch.zeros(S, dtype=torch.long, device=dev)
        self.stats = {"encode_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0, "decode_steps": 0,
                      "decode_rows": 0, "decode_overlapped": 0, "admissions": 0, "preempted": 0}
        # Two host buffers for the tokens and loop flags of a step: one being filled by the
        # step in flight while the host reads the other (`_record`, `_take`).
        self._landing = [_Landing.make(S, dev) for _ in range(2)]
        self._next_landing = 0
        # Blocks kept free at admission, so that running pages can grow for a while.
        self.watermark = max(1, num_blocks // 100)
        self.runner.sampler = self._pick  # captured in the decode graphs with the model
        self._pool: ThreadPoolExecutor | None = None  # made on first use
        self._stats_lock = threading.Lock()
        self._processes = self._start_preparing_processes()
        self._encoder_graphs_on: bool | None = None  # as last applied by `_capture_encoder`
        self._inbox: list[Sequence] = []  # submitted, not yet seen by the engine thread
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._broken: BaseException | None = None
        self._count = itertools.count()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_size: int = 256,
        max_new_tokens: int = 8192,
        **options: Any,
    ) -> NativeEngine:
        """Load a checkpoint folder (config.json, *.safetensors, tokenizer.json) or repo id.

        Args:
            path: What `core_model.checkpoint.load_pretrained` accepts.
            device: Default: CUDA when available, else CPU.
            dtype: Default: bfloat16 on CUDA, float32 on the CPU.
            max_batch_size: Pages decoded at once, capped by free memory.
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

    def _start_preparing_processes(self) -> PreparingProcesses | None:
        count = self.config.prepare_processes
        if count is None:
            cuda = self.runner.device.type == "cuda" and os.name == "posix"
            count = self.config.preprocess_workers if cuda else 0
        if count < 1:
            return None
        if os.name != "posix":  # the workers take their pipes by descriptor
            log.warning("prepare_processes needs POSIX: pages are prepared in threads")
            return None
        try:
            return PreparingProcesses(count, self.family,
                                      self._count_page)
        except OSError as exc:
            log.warning("no page-preparing processes (%s): pages are prepared in threads", exc)
            return None

    def _views_on_device(self, image: Any, mode: str) -> Any:
        """The page's views resized on the engine's device, or None where they are made on
        the CPU: off by config, pixels not at hand as RGB, or no device memory for them.

        By default (None) only lazy images whose pixels read without the GIL go there (pixel
        files from the loading processes); an image in memory is prepared on the CPU. On the
        H200, 8 threads making views of in-memory pages on the GPU doubled the host time of
        the encoder's launches (77 -> 164 ms a call) and the engine alone fell from 26.5 to
        24.8 pages/s in Base; the Converter's pixel files gained (Gundam 90% -> 94% of the
        engine alone, Base even) and left the host's cores free (RESULTS.md, round 10)."""
        on = self.config.resize_on_device
        device = self.runner.device
        if on is False or (on is None and (device.type != "cuda"
                                           or isinstance(image, Image.Image))):
            return None
        try:
            views = prepare_on_device(image, get_mode(mode, self.family), device)
        except torch.cuda.OutOfMemoryError:
            views = None  # beside a full KV cache: the CPU makes them
        if views is not None:
            self._count_page("prepared_on_device")
        return views

    def _capture_encoder(self) -> None:
        """Small DeepEncoder calls as CUDA graphs (`EngineConfig.encoder_graphs`)."""
        inner = self.model.model
        self._encoder_graphs_on = self.config.encoder_graphs
        if not hasattr(inner, "use_encoder_graphs"):
            return  # DeepSeek-OCR-2's encoder: eager
        if not self.config.encoder_graphs or self.config.eager or self.runner.device.type != "cuda":
            inner.encoder_graphs = None  # turned off since: their memory goes
        elif inner.encoder_graphs is None:
            inner.use_encoder_graphs((1024, 640))  # Base and Gundam's global views, the tiles

    def _count_page(self, key: str) -> None:
        """One more page in `stats[key]` (from the preparing threads)."""
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    def _cache_size(self, max_len: int) -> tuple[int, int]:
        """(pages decoded at once, KV-cache blocks): room for `max_batch_size` pages of
        `max_len` positions, within the memory there is (CUDA: the free memory x
        `memory_fraction` but a reserve; CPU: a quarter of the free RAM, the full-size model
        taking ~120 KB a position in float32); when memory is short, the pages are capped at
        what the blocks hold at ~1,536 positions each."""
        cfg = self.config
        per_page = blocks_for(max_len)
        wanted = cfg.max_batch_size
        blocks = cfg.kv_blocks or 1 + wanted * per_page
        budget = None if cfg.kv_blocks is not None else self._kv_budget()
        if budget is not None:
            dtype = next(self.model.parameters()).dtype
            blocks = min(blocks, KVCache.blocks_for_memory(self.model.config.decoder, budget, dtype))
            wanted = min(wanted, max(1, blocks // blocks_for(min(1536, max_len))))
        if blocks - 1 < per_page:
            device = next(self.model.parameters()).device
            raise RuntimeError(f"no room for one page of {max_len} positions in the KV cache "
                               f"({blocks} blocks of {BLOCK_SIZE}) on {device}")
        return wanted, blocks

    def _kv_budget(self) -> int | None:
        """Bytes the KV cache may take; None: no limit known."""
        device = next(self.model.parameters()).device
        if device.type != "cuda":
            spare = host_memory_free()
            return None if spare is None else spare // 4
        KVCache.unbind(self.model)  # an earlier engine's cache on this model can go
        gc.collect()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info(device)
        # Kept back: CUDA graphs, prefill and DeepEncoder activations, vision embeddings.
        return int(free * self.config.memory_fraction) - 8 * 2**30

    # ---- the Engine interface -------------------------------------------------------------

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        seq = Sequence(
            next(self._count), request.max_new_tokens or self.config.max_new_tokens,
            prompt=request.prompt, page_image=request.image, mode=request.mode,
            key=request.key, on_token=on_token,
        )
        return self._enqueue([seq])[0]

    def generate(self, requests: Seq[PageRequest], *, on_token: TokenCallback | None = None) -> list[PageResult]:
        return generate_all(self, requests, on_token=on_token)

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
        if on_token is not None:
            for s in seqs:
                s.on_token = lambda token, delta, i=s.index: on_token(i, token, delta)
        return [f.result() for f in self._enqueue(seqs)]

    def run(self, seqs: list[Sequence]) -> None:
        """Decode ready-made sequences to their end (benchmarks); results stay on them."""
        for future in self._enqueue(seqs):
            future.result()

    def close(self) -> None:
        """Finish nothing more: pages not yet done fail with `EngineClosed`."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.close()

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

    # ---- the engine thread -----------------------------------------------------------------

    def _enqueue(self, seqs: list[Sequence]) -> list[Future]:
        now = time.perf_counter()
        for seq in seqs:
            seq.future, seq.submitted_at, seq.pixels_at, seq.ready_at = Future(), now, now, now
        with self._wake:
            if self._closed or self._broken is not None:
                raise EngineClosed(f"the native engine is closed{self._why_broken()}")
            self._inbox.extend(seqs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="dsocr-native", daemon=True)
                self._thread.start()
            self._wake.notify()
        return [s.future for s in seqs]

    def _why_broken(self) -> str:
        return f" (broken: {self._broken!r})" if self._broken is not None else ""

    def _serve(self) -> None:
        """The step loop: take new pages, prepare ahead, admit, decode, complete futures."""
        waiting: deque[Sequence] = deque()
        running: dict[int, Sequence] = {}
        free = list(range(self.runner.num_slots))
        step: _Step | None = None  # the decode step in flight, its tokens not yet read
        stepped_at = 0.0  # when the last decode step was launched
        admitted: list[Sequence] = []  # out of `waiting`, not yet in `running`
        try:
            self.runner.capture_all()  # every decode graph up front, none mid-run
            self._capture_encoder()
            while True:
                with self._wake:
                    while not (self._inbox or waiting or running or self._closed):
                        if not self._wake.wait(IDLE_EXIT_S) and not self._inbox:
                            self._thread = None  # idle: end here, the next submit starts one
                            return
                    if self._closed:
                        break
                    waiting.extend(self._inbox)
                    self._inbox.clear()
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.config.preprocess_workers, "dsocr-preprocess")
                if self.config.encoder_graphs != self._encoder_graphs_on:  # set since: follow it
                    self._capture_encoder()
                ahead = self._lookahead(free)
                start_preparing(self._pool, self.model.prepare_image, waiting, ahead,
                                pin=self.runner.device.type == "cuda",
                                processes=self._processes if self.config.prepare_processes != 0
                                else None, on_device=self._views_on_device)
                self.stats["encode_s"] += encode_ready(
                    self.model, self.tokenizer, itertools.islice(waiting, ahead),
                    max_views_per_call=self.config.max_views_per_call,
                    wait_s=self.config.admit_wait_s if running else None, stats=self.stats)
                admitted = self._admissible(waiting, free, running)
                if admitted:
                    self.stats["admissions"] += 1
                    step = self._land(step, running, free)  # the rows change: read it first
                    for seq in self._prefill(admitted):  # no blocks left for it: back in line
                        self._requeue(seq, free, waiting)
                    for seq in admitted:
                        if seq.slot >= 0:
                            running[seq.slot] = seq  # finished ones leave below, before any decode
                    self._release(running, free)
                if running and self._filling(waiting, free, stepped_at):
                    self._wait_for_pixels(waiting, free, timeout=0.005)  # then encode, admit
                elif running:
                    step = self._decode(running, free, waiting, step)
                    stepped_at = time.perf_counter()
                elif waiting and not admitted:  # nothing to decode: sleep until a page is ready
                    self._wait_for_pixels(waiting, free, timeout=0.05)
        except BaseException as exc:  # the GPU or the model broke: no page may hang
            log.exception("the native engine stopped")
            with self._wake:
                self._broken = exc
            self._fail_all([*admitted, *running.values(), *waiting], exc)
        with self._wake:
            left, self._inbox = self._inbox, []
        self._fail_all([*left, *waiting, *running.values()], EngineClosed("the native engine was closed"))

    @staticmethod
    def _fail_all(seqs: list[Sequence], exc: BaseException) -> None:
        for seq in seqs:
            if seq.future is not None and not seq.future.done():
                seq.future.set_exception(exc)

    def _admissible(self, waiting: deque[Sequence], free: list[int], running: dict) -> list[Sequence]:
        """Ready pages (encoded, prompts built) to admit now, each given a free slot, while the
        KV cache keeps `watermark` blocks free beyond their prompts. While others decode,
        admission waits for a group of `min_admit` (prefill is efficient on groups; pages that
        become ready one by one would each stop the decode steps), or until the first ready
        page has waited `admit_wait_s` since it became ready; it waits only while more pages
        are on their way (being prepared or encoded): the last pages of a stream go at once."""
        cfg = self.config
        limit = min(len(free), cfg.max_admit)
        if not limit:
            return []
        window = list(itertools.islice(waiting, self._lookahead(free)))
        ready = [s for s in window if s.is_ready][:limit]
        if running and len(ready) < min(cfg.min_admit, limit) and (
                not ready or (len(ready) < len(window) and time.perf_counter()
                              - min(s.ready_at for s in ready) < cfg.admit_wait_s)):
            return []
        admitted = []
        room = self.runner.blocks.num_free - self.watermark
        for seq in ready:
            need = blocks_for(seq.num_prompt_tokens + len(seq.output_ids) or 1)
            if need > room and (running or admitted):
                break
            room -= need
            waiting.remove(seq)
            if not seq.started:
                if seq.future is not None and not seq.future.set_running_or_notify_cancel():
                    continue  # cancelled by its caller before it started
                seq.started = True
                seq.timings["queue"] = time.perf_counter() - seq.submitted_at
                seq.timings["prepared"] = seq.pixels_at - seq.submitted_at  # pixels ready
                seq.timings["encoded"] = seq.ready_at - seq.submitted_at  # prompt ready
            seq.slot = heapq.heappop(free)
            admitted.append(seq)
        return admitted

    def _filling(self, waiting: deque[Sequence], free: list[int], stepped_at: float) -> bool:
        """Whether the next decode step waits for pages on their way in: a group of
        `min_admit` (or as many as there are free slots) waiting, KV-cache blocks free for
        them, and the last step less than `fill_wait_s` ago. A page being prepared is a few
        tens of ms from admission; one that waits for blocks needs the steps."""
        cfg = self.config
        if cfg.fill_wait_s <= 0 or time.perf_counter() - stepped_at >= cfg.fill_wait_s:
            return False
        group = min(cfg.min_admit, len(free))
        room = self.runner.blocks.num_free - self.watermark
        return (group > 0 and min(len(waiting), self._lookahead(free)) >= group
                and room >= group * blocks_for(min(1024, self.runner.max_len)))

    def _wait_for_pixels(self, waiting: deque[Sequence], free: list[int], timeout: float) -> None:
        """Sleep until a waiting page's pixels are prepared (or `timeout`)."""
        pending = {s.pending_image for s in itertools.islice(waiting, self._lookahead(free))
                   if s.pending_image is not None and not s.pending_image.done()}
        if pending:
            wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        else:
            time.sleep(0.001)

    def _lookahead(self, free: list[int]) -> int:
        """Waiting pages whose pixels are prepared ahead: the next admission and two more
        (at most 3 x `max_admit` pages of pinned pixels, ~2 GB in Gundam, not every page
        that free slots could take)."""
        return min(len(free), self.config.max_admit) + 2 * self.config.max_admit

    def _requeue(self, seq: Sequence, free: list[int], waiting: deque[Sequence]) -> None:
        """Give back `seq`'s slot and blocks and put it first in line."""
        self.runner.blocks.release(seq.slot)
        heapq.heappush(free, seq.slot)
        seq.slot = -1
        waiting.appendleft(seq)

    def _grow_ahead(self, seqs: list[Sequence]) -> bool:
        """Give each page the block for the position it writes one step after the step in
        flight; False if one found none free (nothing is preempted here)."""
        blocks = self.runner.blocks
        return all(blocks.grow(s.slot, s.num_prompt_tokens + len(s.output_ids) + 1)
                   for s in seqs if blocks.held(s.slot) <= s.num_prompt_tokens + len(s.output_ids))

    def _grow(self, running: dict[int, Sequence], free: list[int], waiting: deque[Sequence]) -> None:
        """Give every running page the block for the position it writes next; where none is
        free, preempt the newest pages (requeued, to be prefilled again) until it fits."""
        blocks = self.runner.blocks
        # Most steps nobody crosses into a new block (one each 128 positions).
        short = [s for s in running.values()
                 if blocks.held(s.slot) < s.num_prompt_tokens + len(s.output_ids)]
        for seq in sorted(short, key=lambda s: s.index):  # oldest first
            if seq.slot not in running:
                continue  # preempted meanwhile
            while not blocks.grow(seq.slot, seq.num_prompt_tokens + len(seq.output_ids)):
                victim = max(running.values(), key=lambda s: s.index)
                del running[victim.slot]
                self._requeue(victim, free, waiting)
                self.stats["preempted"] += 1
                if victim is seq:
                    break

    def _release(self, running: dict[int, Sequence], free: list[int]) -> None:
        for slot in [s for s, seq in running.items() if seq.is_finished]:
            seq = running.pop(slot)
            seq.timings["total"] = time.perf_counter() - seq.submitted_at
            self.runner.blocks.release(slot)
            heapq.heappush(free, slot)
            seq.image = seq.vision_embeds = None
            if seq.future is not None:
                seq.future.set_result(self.result(seq))

    @torch.inference_mode()
    def _prefill(self, seqs: list[Sequence]) -> list[Sequence]:
        """Prefill the admitted pages (a preempted page: its prompt and its output but the
        last token, which the next decode step feeds). Returns the pages that found no free
        KV-cache blocks."""
        fit_to_slot(seqs, self.runner.max_len)
        no_room, live = [], []
        for s in seqs:
            if s.is_finished:
                continue
            if self.runner.blocks.grow(s.slot, s.num_prompt_tokens + max(0, len(s.output_ids) - 1)):
                live.append(s)
            else:
                no_room.append(s)
        live.sort(key=_prefill_len)
        dev = self.runner.device
        while live:
            chunk = [live.pop(0)]
            while live and (len(chunk) + 1) * _prefill_len(live[0]) <= self.config.max_prefill_tokens:
                chunk.append(live.pop(0))
            t0 = time.perf_counter()
            embeds = []
            for s in chunk:
                ids = _to(dev, s.prompt_ids)
                mask = _to(dev, s.image_mask) if s.image_mask else None
                vis = s.vision_embeds.to(dev) if s.vision_embeds is not None else None
                embed = self.model.embed(ids, mask, vis)
                if s.output_ids:  # preempted: its output so far, but the last token
                    said = _to(dev, s.output_ids[:-1], torch.long)
                    embed = torch.cat([embed, self.model.embed(said)])
                embeds.append(embed)
            slots = [s.slot for s in chunk]
            fresh = [row for row, s in enumerate(chunk) if not s.output_ids]
            self.out_lengths[slots] = _to(dev, [len(s.output_ids) for s in chunk])
            for s in chunk:
                if s.output_ids:  # preempted: the n-gram and loop rules see its output again
                    self.out_tokens[s.slot, : len(s.output_ids)] = _to(dev, s.output_ids)
            logits = self.runner.prefill(embeds, slots)
            if fresh:
                rows = _to(dev, [slots[r] for r in fresh])
                picked = self._pick(logits[fresh], rows)
                self._take(self._record([chunk[r] for r in fresh], picked, rows))
            spent = time.perf_counter() - t0
            self.stats["prefill_s"] += spent
            share = spent / len(chunk)
            for s in chunk:
                s.timings["prefill"] = s.timings.get("prefill", 0.0) + share
                if s.is_finished:
                    s.timings["decode"] = 0.0
                elif "decode_start" not in s.timings:
                    s.timings["decode_start"] = time.perf_counter()
        return no_room

    @torch.inference_mode()
    def _decode(self, running: dict[int, Sequence], free: list[int], waiting: deque[Sequence],
                step: _Step | None) -> _Step | None:
        """Launch the next decode step of the running pages and read the one before it.

        When the running pages are those of the step in flight, the next step is launched
        first, fed that step's tokens on the device, and the host reads the step in flight
        while the GPU works (pages that finished in it run one step too many, whose token is
        dropped). Otherwise the step in flight is read first, finished pages leave, and the
        next step's rows are built anew (compacted into the smallest bucket)."""
        t0 = time.perf_counter()
        seqs = list(running.values())
        if (self.config.overlap and step is not None and len(step.seqs) == len(seqs)
                and all(map(operator.is_, step.seqs, seqs)) and self._grow_ahead(seqs)):
            nxt = self._launch(seqs, after=step)
            self._land(step, running, free)
            self.stats["decode_overlapped"] += 1
        else:
            self._land(step, running, free)
            self._grow(running, free, waiting)
            nxt = self._launch(list(running.values())) if running else None
        self.stats["decode_s"] += time.perf_counter() - t0
        return nxt

    def _launch(self, seqs: list[Sequence], after: _Step | None = None) -> _Step:
        """Queue one decode step on the device for `seqs`: fed each page's last token, or,
        `after` a step still in flight for the same pages, that step's tokens."""
        batch = self.runner.bucket_for(len(seqs))
        pad = batch - len(seqs)
        ahead = 0 if after is None else 1  # tokens the host has not read yet
        positions = [s.num_prompt_tokens + len(s.output_ids) - 1 + ahead for s in seqs] + [0] * pad
        slots = [s.slot for s in seqs] + [self.runner.pad_slot] * pad
        tokens = (torch.tensor([s.output_ids[-1] for s in seqs] + [0] * pad) if after is None
                  else after.tokens[:batch])
        next_tokens = self.runner.decode(tokens, torch.tensor(positions), torch.tensor(slots))
        self.stats["decode_steps"] += 1
        return self._record(seqs, next_tokens, self.runner.slots[: len(seqs)])

    def _land(self, step: _Step | None, running: dict[int, Sequence], free: list[int]) -> None:
        """Read a step's tokens into its pages; finished pages leave."""
        if step is not None:
            self.stats["decode_rows"] += self._take(step)
            self._release(running, free)

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

    def _record(self, seqs: list[Sequence], next_tokens: torch.Tensor,
                slots: torch.Tensor) -> _Step:
        """Queue on the device what follows a step: each row's token into its page's history,
        the loop check, and the copies of both to a host buffer (read by `_take`).
        `next_tokens` (B >= n rows) may be a CUDA graph's output: kept for a chained step."""
        n = len(seqs)
        lengths = self.out_lengths[slots]  # (n,)
        self.out_tokens[slots, lengths.clamp(max=self.out_tokens.shape[1] - 1)] = next_tokens[:n]
        self.out_lengths[slots] = lengths + 1
        landing = self._landing[self._next_landing]
        self._next_landing ^= 1
        landing.tokens[:n].copy_(next_tokens[:n], non_blocking=True)
        if self.loop_detector is not None:
            looping = self.loop_detector.update(self.out_tokens[slots], lengths + 1)
            landing.looping[:n].copy_(looping[:n], non_blocking=True)
        if landing.done is not None:
            landing.done.record()
        return _Step(seqs, next_tokens, landing)

    def _take(self, step: _Step) -> int:
        """Wait for a step's tokens on the host; record them and decide who stops. Returns
        how many pages took a token."""
        landing, n = step.landing, len(step.seqs)
        if landing.done is not None:
            landing.done.synchronize()
        next_host = landing.tokens[:n].tolist()
        looping = landing.looping[:n].tolist() if self.loop_detector is not None else None
        took = 0
        for row, s in enumerate(step.seqs):
            if s.is_finished:
                continue  # finished in the step before (an overlapped step ran it once more)
            took += 1
            token = next_host[row]
            if token == self.eos_id:
                s.finish_reason = "eos"
            else:
                s.output_ids.append(token)
                if len(s.output_ids) >= s.max_new_tokens:
                    s.finish_reason = "length"
                elif looping is not None and looping[row]:
                    s.finish_reason = "repetition"
                if s.on_token is not None:
                    self._stream(s, token)
            if s.is_finished and "decode_start" in s.timings:
                s.timings["decode"] = time.perf_counter() - s.timings.pop("decode_start")
        return took

    def _stream(self, s: Sequence, token: int) -> None:
        try:
            s.on_token(token, self._text_delta(s, final=s.is_finished))
        except Exception:  # a caller's callback never stops the engine
            log.exception("on_token callback failed for request %d; streaming stopped", s.index)
            s.on_token = None

    def _text_delta(self, s: Sequence, *, final: bool = False) -> str:
        """New text since the last call; an incomplete multi-byte character is held back
        until it completes or the sequence ends."""
        before = self.tokenizer.decode(s.output_ids[s.prefix_offset : s.read_offset])
        after = self.tokenizer.decode(s.output_ids[s.prefix_offset :])
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            s.prefix_offset, s.read_offset = s.read_offset, len(s.output_ids)
            return after[len(before) :]
        return ""



def host_memory_free() -> int | None:
    """Bytes of RAM free now (Linux, macOS); None where the OS does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _to(device: torch.device, data: list, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host list on `device` without waiting for the device's queue (a blocking copy
    would wait for all GPU work queued before it)."""
    return torch.tensor(data, dtype=dtype).to(device, non_blocking=True)


def _prefill_len(s: Sequence) -> int:
    return s.num_prompt_tokens + max(0, len(s.output_ids) - 1)


@dataclass
class _Landing:
    """Host memory a step's results are copied to (pinned on CUDA, so the copies are
    asynchronous), and the event that says they arrived."""

    tokens: torch.Tensor  # (S,) long
    looping: torch.Tensor  # (S,) bool
    done: torch.cuda.Event | None

    @classmethod
    def make(cls, size: int, device: torch.device) -> _Landing:
        cuda = device.type == "cuda"
        return cls(torch.zeros(size, dtype=torch.long, pin_memory=cuda),
                   torch.zeros(size, dtype=torch.bool, pin_memory=cuda),
                   torch.cuda.Event() if cuda else None)


@dataclass
class _Step:
    """A step queued on the device: its pages (one row each), its tokens there, and where
    they land on the host."""

    seqs: list[Sequence]
    tokens: torch.Tensor  # (B,) on the device: the next step's input when it is chained
    landing: _Landing
