"""A random checkpoint written with the released names loads by path and reads pages end to
end (preprocessing, DeepEncoder, prompt, decoder). Needs the inputs and vision modules
(`core_model.checkpoint`, `preprocess`, `deep_encoder`); skipped where they are absent."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("core_model.checkpoint")
pytest.importorskip("core_model.preprocess")
pytest.importorskip("core_model.deep_encoder")

from core_model.engines.interface import PageRequest  # noqa: E402
from core_model.engines.native import NativeEngine  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.mark.slow
def test_random_checkpoint_loads_by_path_and_reads_pages(checkpoint):
    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_batch_size=4,
                                          max_new_tokens=6, no_repeat_ngram_size=0)
    pages = [
        PageRequest(Image.new("RGB", (300, 200), "white"), mode="base", key="a"),
        PageRequest(Image.new("RGB", (1400, 900), (20, 90, 200)), mode="gundam", key="b"),
        PageRequest(Image.new("L", (500, 700), 128), mode="small", key="c"),
    ]
    results = engine.generate(pages)
    assert [r.key for r in results] == ["a", "b", "c"]
    for r in results:
        assert r.finish_reason in ("eos", "length"), r.error
        assert 0 < r.num_vision_tokens < r.num_prompt_tokens
        assert len(r.token_ids) <= 6 and isinstance(r.text, str)
    assert results[0].num_vision_tokens == 16 * 17 + 1  # Base: 16x16 grid, newlines, separator
    assert results[1].num_vision_tokens > results[0].num_vision_tokens  # Gundam adds tiles
