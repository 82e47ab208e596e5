"""Per-page state while the native engine works on it: request, prompt, slot, output, timings."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Sequence:
    index: int  # the engine's running count of requests (a `generate_ids` list position)
    max_new_tokens: int
    prompt: str | None = None  # built into prompt_ids once the vision tokens are known
    page_image: Any = None  # the PIL page, until its pixels are prepared
    mode: str = "gundam"
    image: Any = None  # an ImageInput for the DeepEncoder, or None
    pending_image: Future | None = None  # the ImageInput being prepared in a worker thread
    prompt_ids: list[int] | None = None
    image_mask: list[bool] | None = None
    vision_embeds: torch.Tensor | None = None  # (N, hidden), at the image_mask positions
    key: Any = None
    slot: int = -1  # its row of the KV cache's block table while admitted
    started: bool = False  # admitted once (its future is running); a preempted page stays so
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    num_vision_tokens: int = 0
    future: Future | None = None  # completed with the PageResult when the page is done
    on_token: Callable[[int, str], None] | None = None  # (token id, text delta)
    submitted_at: float = 0.0
    pixels_at: float = 0.0  # when its pixels were prepared
    ready_at: float = 0.0  # when its prompt (with its vision tokens) was built
    # incremental detokenisation for streaming
    prefix_offset: int = 0
    read_offset: int = 0

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids or ())

    @property
    def is_finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def needs_inputs(self) -> bool:
        """Its vision tokens or prompt ids are still to be made."""
        if self.is_finished:
            return False
        has_image = (self.page_image is not None or self.pending_image is not None
                     or self.image is not None)
        return self.prompt_ids is None or (has_image and self.vision_embeds is None)

    @property
    def is_ready(self) -> bool:
        """Its prompt ids (with its vision tokens) are built, or it failed: it can be admitted."""
        return not self.needs_inputs

    def fail(self, message: str) -> None:
        self.finish_reason, self.error = "error", message
