"""The DeepEncoder run ahead of admission, in its own thread and CUDA stream.

An admission used to stop the decode steps for its group's encoder call: in Gundam about a
third of the engine's time on real page lengths, with the GPU's compute units mostly idle
during the decode steps (they wait on reading the KV cache and the weights). Here one thread
encodes the pages waiting in line while the engine thread decodes: the next pages whose
pixels are prepared, up to one call's worth of views at a time, on a stream of low priority
(the decode steps go first where both have work for the GPU). When its call ends, the pages'
vision tokens and prompts are ready and an admission only prefills them.

The engine thread is the only one that touches the line of waiting pages: it hands a group
over (`feed`) and sees a page as encoded once its `encoding` future is done; the encoder
thread writes a page's fields before it completes that future.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from core_model.engines.page_inputs import encode_and_build_prompts
from core_model.engines.sequence import Sequence

log = logging.getLogger(__name__)


class EncoderThread:
    def __init__(self, model: Any, tokenizer: Any, *, max_views_per_call: int, max_len: int) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_views_per_call, self.max_len = max_views_per_call, max_len
        device = next(model.parameters()).device
        # Priority 0 is CUDA's lowest; the engine thread's stream is given a higher one.
        self.stream = torch.cuda.Stream(device, priority=0) if device.type == "cuda" else None
        self._pool = ThreadPoolExecutor(1, "dsocr-encoder")
        self._job: Future | None = None

    def feed(self, waiting: Iterable[Sequence]) -> float:
        """Unless a group is being encoded, hand over the next pages among `waiting` whose
        pixels are prepared, up to `max_views_per_call` views (at least one page). Returns
        the encoder's seconds on the group finished since the last call (0.0 if none)."""
        spent = 0.0
        if self._job is not None:
            if not self._job.done():
                return spent
            spent, self._job = self._job.result(), None
        group, views = [], 0
        for s in waiting:
            if s.encoding is not None or s.pending_image is None or not s.pending_image.done():
                continue
            image = None if s.pending_image.exception() else s.pending_image.result()
            n = 1 + (0 if image is None or image.tiles is None else len(image.tiles))
            if group and views + n > self.max_views_per_call:
                break
            group.append(s)
            views += n
        if group:
            self._job = self._pool.submit(self._encode, group)
            for s in group:
                s.encoding = self._job
        return spent

    def wait(self) -> None:
        """Until the group handed over last is encoded."""
        if self._job is not None:
            self._job.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @torch.inference_mode()
    def _encode(self, group: list[Sequence]) -> float:
        if self.stream is not None:  # after the weights' loading
            self.stream.wait_stream(torch.cuda.default_stream(self.stream.device))
        try:
            with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
                return encode_and_build_prompts(
                    self.model, self.tokenizer, group,
                    max_views_per_call=self.max_views_per_call, max_len=self.max_len,
                )
        except Exception as exc:  # a bug, not a bad page: its pages fail, the engine goes on
            log.exception("the encoder thread failed on pages %s", [s.index for s in group])
            for s in group:
                if not s.is_finished:
                    s.fail(f"page {s.index}: vision encoder failed: {type(exc).__name__}: {exc}")
            return 0.0
