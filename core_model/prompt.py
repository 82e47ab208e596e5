"""Prompts the model was trained for, and prompt -> token ids with the image positions.

The release builds the model input as: BOS, the text before `<image>`, one image id per
vision position (newline and separator positions included), the text after `<image>`.
Each text piece is encoded on its own without special tokens, so `\n` and
`<|grounding|>` become their own ids. Like the release's Hugging Face `infer` (its
"plain" conversation template followed by `.strip()`), the prompt's outer whitespace is
stripped first. Knows nothing about pixels; the number of vision positions comes from
`preprocess.num_vision_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core_model.engines.interface import GROUNDING_MARKDOWN_PROMPT
from core_model.tokenizer import IMAGE_TOKEN, Tokenizer

GROUNDING_MARKDOWN = GROUNDING_MARKDOWN_PROMPT  # layout boxes + markdown
GROUNDING_OCR = "<image>\n<|grounding|>OCR this image."  # one grounded line per text line
FREE_OCR = "<image>\nFree OCR."  # text only, no layout
PARSE_FIGURE = "<image>\nParse the figure."  # charts, figures, chemistry
DESCRIBE = "<image>\nDescribe this image in detail."

PROMPTS: dict[str, str] = {
    "markdown": GROUNDING_MARKDOWN,
    "ocr": GROUNDING_OCR,
    "free": FREE_OCR,
    "figure": PARSE_FIGURE,
    "describe": DESCRIBE,
}


def locate_prompt(phrase: str) -> str:
    """The grounding prompt that asks where `phrase` is in the image."""
    return f"<image>\nLocate <|ref|>{phrase}<|/ref|> in the image."


@dataclass
class PromptIds:
    """Token ids of one prompt and which of them are image positions."""

    ids: list[int]
    image_mask: list[bool]  # True where the vision encoder's output goes

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def num_image_tokens(self) -> int:
        return sum(self.image_mask)


def split_prompt(prompt: str) -> tuple[str, str]:
    """The text before and after the one `<image>` of a prompt (outer whitespace stripped).

    Raises:
        ValueError: When the prompt does not hold exactly one `<image>`.
    """
    prompt = prompt.strip()
    count = prompt.count(IMAGE_TOKEN)
    if count != 1:
        raise ValueError(
            f"a prompt needs exactly one {IMAGE_TOKEN} placeholder, found {count}: {prompt!r}"
        )
    before, after = prompt.split(IMAGE_TOKEN)
    return before, after


def build_prompt_ids(tokenizer: Tokenizer, prompt: str, num_vision_tokens: int) -> PromptIds:
    """Token ids for the model: BOS, text before, image ids, text after.

    Args:
        tokenizer: The model's tokenizer.
        prompt: A prompt with exactly one `<image>`, e.g. `GROUNDING_MARKDOWN`.
        num_vision_tokens: Image positions, from `preprocess.num_vision_tokens`.

    Raises:
        ValueError: For a prompt without exactly one `<image>`, or a count below 1.
    """
    if num_vision_tokens < 1:
        raise ValueError(f"num_vision_tokens must be positive, got {num_vision_tokens}")
    before, after = split_prompt(prompt)
    before_ids = tokenizer.encode(before)
    after_ids = tokenizer.encode(after)
    ids = [tokenizer.bos_id, *before_ids, *[tokenizer.image_id] * num_vision_tokens, *after_ids]
    mask = [False] * (1 + len(before_ids)) + [True] * num_vision_tokens + [False] * len(after_ids)
    return PromptIds(ids=ids, image_mask=mask)
