"""The engine interface: page images + prompt + mode -> one result per page.

Every engine (the native PyTorch engine, vLLM, an OpenAI-compatible server) implements
`Engine.generate`. The layers above (pipeline, connectors) only ever call this. An engine
never raises for one bad page: that page's result carries `finish_reason="error"` and the
message, and the other pages of the batch are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

from PIL import Image

FinishReason = Literal["eos", "length", "repetition", "error"]

GROUNDING_MARKDOWN_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
MODES = ("tiny", "small", "base", "large", "gundam")


@dataclass
class PageRequest:
    """One page to read. `key` is opaque to the engine and comes back on the result."""

    image: Image.Image
    prompt: str = GROUNDING_MARKDOWN_PROMPT
    mode: str = "gundam"
    max_new_tokens: int | None = None  # None: the engine's default
    key: Any = None


@dataclass
class PageResult:
    """What the engine produced for one page."""

    text: str  # decoded output, special tokens kept as text, EOS text not included
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "eos"
    num_vision_tokens: int = 0  # image positions in the prompt (newlines, separator included)
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds, by stage
    error: str | None = None
    key: Any = None


# Called as on_token(request_index, token_id, text_so_far_delta) while decoding.
TokenCallback = Callable[[int, int, str], None]


@runtime_checkable
class Engine(Protocol):
    name: str

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page; results come back in the order of `requests`."""
        ...
