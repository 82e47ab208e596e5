"""Prompt -> ids with image positions, against the release's recipe written out here."""

from __future__ import annotations

import pytest

from core_model.prompt import (
    DESCRIBE,
    FREE_OCR,
    GROUNDING_MARKDOWN,
    GROUNDING_OCR,
    PARSE_FIGURE,
    PROMPTS,
    build_prompt_ids,
    locate_prompt,
)
from core_model.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(real_tokenizer_path):
    return load_tokenizer(real_tokenizer_path)


def release_ids(tokenizer, prompt, count):
    """The release's `infer`: strip, split at <image>, encode pieces alone, BOS in front."""
    before, after = prompt.strip().split("<image>")
    ids = tokenizer.encode(before) + [128815] * count + tokenizer.encode(after)
    mask = (
        [False] * len(tokenizer.encode(before))
        + [True] * count
        + [False] * len(tokenizer.encode(after))
    )
    return [0, *ids], [False, *mask]


def test_trained_prompts_are_the_released_strings():
    assert GROUNDING_MARKDOWN == "<image>\n<|grounding|>Convert the document to markdown."
    assert GROUNDING_OCR == "<image>\n<|grounding|>OCR this image."
    assert FREE_OCR == "<image>\nFree OCR."
    assert PARSE_FIGURE == "<image>\nParse the figure."
    assert DESCRIBE == "<image>\nDescribe this image in detail."
    assert locate_prompt("the title") == "<image>\nLocate <|ref|>the title<|/ref|> in the image."


@pytest.mark.parametrize(
    "prompt", [*PROMPTS.values(), locate_prompt("Table 2"), "Page 3 <image> read it"]
)
@pytest.mark.parametrize("count", [73, 111, 273, 421, 903])
def test_matches_release_recipe(tokenizer, prompt, count):
    built = build_prompt_ids(tokenizer, prompt, count)
    assert (built.ids, built.image_mask) == release_ids(tokenizer, prompt, count)
    assert built.num_image_tokens == count and built.num_tokens == len(built.ids)


def test_markdown_prompt_layout(tokenizer):
    built = build_prompt_ids(tokenizer, GROUNDING_MARKDOWN, 273)
    assert built.ids[0] == 0 and not built.image_mask[0]
    assert built.ids[1:274] == [128815] * 273 and all(built.image_mask[1:274])
    assert built.ids[274:] == [201, 128820, 21842, 270, 4940, 304, 2121, 7919, 16]
    assert not any(built.image_mask[274:])


def test_pieces_are_encoded_separately(tokenizer):
    # "ab" would merge across the placeholder if the prompt were encoded as one string.
    built = build_prompt_ids(tokenizer, "Hello<image>world", 2)
    assert built.ids == [0, *tokenizer.encode("Hello"), 128815, 128815, *tokenizer.encode("world")]


def test_outer_whitespace_is_stripped_like_the_release(tokenizer):
    padded = build_prompt_ids(tokenizer, "  <image>\nFree OCR. \n", 10)
    assert padded == build_prompt_ids(tokenizer, FREE_OCR, 10)


@pytest.mark.parametrize("prompt,found", [("Free OCR.", 0), ("<image><image>\nFree OCR.", 2)])
def test_prompt_needs_exactly_one_image(tokenizer, prompt, found):
    with pytest.raises(ValueError, match=rf"exactly one <image> placeholder, found {found}"):
        build_prompt_ids(tokenizer, prompt, 273)


def test_vision_token_count_must_be_positive(tokenizer):
    with pytest.raises(ValueError, match="num_vision_tokens must be positive"):
        build_prompt_ids(tokenizer, FREE_OCR, 0)
