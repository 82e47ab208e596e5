"""Per-page state while the native engine works on it: prompt, slot, output, timings."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Sequence:
    index: int  # position in the caller's request list
    max_new_tokens: int
    prompt: str | None = None  # built into prompt_ids once the vision tokens are known
    image: Any = None  # an ImageInput for the DeepEncoder, or None
    pending_image: Future | None = None  # the ImageInput being prepared in a worker thread
    prompt_ids: list[int] | None = None
    image_mask: list[bool] | None = None
    vision_embeds: torch.Tensor | None = None  # (N, hidden), at the image_mask positions
    key: Any = None
    slot: int = -1
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    num_vision_tokens: int = 0
    # incremental detokenisation for streaming
    prefix_offset: int = 0
    read_offset: int = 0

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids or ())

    @property
    def is_finished(self) -> bool:
        return self.finish_reason is not None

    def fail(self, message: str) -> None:
        self.finish_reason, self.error = "error", message
