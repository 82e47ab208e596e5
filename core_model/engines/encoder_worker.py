"""The DeepEncoder on its own thread and CUDA stream, ahead of admission (GPU only).

Decoding is bound by memory bandwidth, the encoder by arithmetic: run side by side they
share the GPU better than in turns. The engine hands groups of prepared pages to
`EncoderWorker.submit`; their vision tokens come back as a future while the engine thread
keeps stepping the decode batch. `EncodedGroup.take` makes the consuming stream wait for
the encoder's work and tells the allocator where the tensors are used next.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from core_model.model import DeepseekOCRForCausalLM


@dataclass
class EncodedGroup:
    embeds: list[torch.Tensor]  # (N_i, hidden) per page, made on the encoder's stream
    done: torch.cuda.Event
    seconds: float  # the group's encoder time, measured on the encoder's stream

    def take(self, index: int) -> torch.Tensor:
        """Page `index`'s vision tokens, safe to use on the current stream."""
        stream = torch.cuda.current_stream()
        stream.wait_event(self.done)
        tensor = self.embeds[index]
        tensor.record_stream(stream)
        return tensor


class EncoderWorker:
    def __init__(self, model: DeepseekOCRForCausalLM, *, max_views_per_call: int | None) -> None:
        self.model = model
        self.max_views_per_call = max_views_per_call
        self.device = next(model.parameters()).device
        self.stream = torch.cuda.Stream(self.device)
        self._pool = ThreadPoolExecutor(1, "dsocr-encoder")

    def submit(self, images: list) -> Future[EncodedGroup]:
        """Encode `images` (ImageInputs) in the background; the future holds their tokens."""
        return self._pool.submit(self._encode, images)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    @torch.inference_mode()
    def _encode(self, images: list) -> EncodedGroup:
        if self.device.index is not None:
            torch.cuda.set_device(self.device)
        start = torch.cuda.Event(enable_timing=True)
        done = torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self.stream):
            start.record()
            embeds = self.model.encode_images(images, max_views_per_call=self.max_views_per_call)
            done.record()
        done.synchronize()  # this thread only: the engine thread goes on decoding
        return EncodedGroup(embeds, done, start.elapsed_time(done) / 1000)
