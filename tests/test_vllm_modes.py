"""Modes in vLLM: the engines send each page in a form vLLM's DeepSeek-OCR processor reads as
the native engine does, or refuse it.

Checked against a transcription of vLLM's processor (`tests/fake_vllm.py`): the image
positions it reserves in the prompt, the tile grid, the tokens and the global view its
processor makes for given kwargs, in releases that ignore per-request sizes (0.11 to 0.18)
and in those that take them (0.19 on). "Faithful" means: as many positions as features,
and the tokens, tile grid and global view the native engine uses for that mode.
"""

from __future__ import annotations

import pytest

from core_model.engines.interface import MODES, PageRequest
from core_model.engines.openai_engine import OpenAIEngine
from core_model.engines.vllm_protocol import VLLM_MODES, mode_processor_kwargs
from core_model.modes import get_mode
from core_model.preprocess import count_vision_tokens, tile_grid_for
from tests import fake_vllm
from tests.fake_vllm import page_image, upstream_placeholder_count, upstream_processor

SHAPES = {
    "A4 portrait, 144 dpi": (1191, 1684),
    "A4 landscape": (1684, 1191),
    "tiny": (120, 80),
    "huge": (6000, 8500),
    "one tile": (640, 640),
    "just over one tile": (641, 640),
    "wide strip": (3000, 200),
    "tall strip": (200, 3000),
    "square": (1024, 1024),
}


def native_view(mode: str) -> tuple:
    """The native engine's global view in `fake_vllm.ProcessorOutput.global_view` terms."""
    m = get_mode(mode)
    return ("squash", m.base_size, m.base_size) if m.resize else ("pad", m.base_size)


def faithful(mode: str, size: tuple[int, int], *, honours_sizes: bool) -> bool:
    """vLLM reads a page of this size in this mode as the native engine does, when the
    request carries the mode's kwargs."""
    made = upstream_processor(*size, **mode_processor_kwargs(mode), honours_sizes=honours_sizes)
    native_grid = tile_grid_for(*size, mode)
    return (
        made.num_tokens == upstream_placeholder_count(*size)
        and made.num_tokens == count_vision_tokens(native_grid, mode)
        and made.grid == native_grid
        and made.global_view == native_view(mode)
    )


@pytest.mark.parametrize("size", SHAPES.values(), ids=SHAPES.keys())
def test_gundam_is_read_by_vllm_as_by_the_native_engine(size):
    placeholders = upstream_placeholder_count(*size)
    assert fake_vllm.upstream_grid(*size) == tile_grid_for(*size, "gundam")
    assert placeholders == count_vision_tokens(tile_grid_for(*size, "gundam"), "gundam")
    assert upstream_processor(*size).num_tokens == placeholders  # vLLM's defaults: gundam
    for honours in (False, True):
        assert faithful("gundam", size, honours_sizes=honours)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "gundam"])
def test_no_other_mode_is_read_faithfully_by_any_vllm_release(mode):
    a4 = SHAPES["A4 portrait, 144 dpi"]
    for honours in (False, True):
        assert not faithful(mode, a4, honours_sizes=honours)
        misread = [name for name, size in SHAPES.items()
                   if not faithful(mode, size, honours_sizes=honours)]
        assert len(misread) >= len(SHAPES) - 2, misread  # at most a square page or two


def test_the_engines_declare_gundam_only():
    """vLLM reads gundam only; an OpenAI-compatible server that lists no modes at /models
    (here: none answers) is taken for vLLM, and a base page is refused before it is sent."""
    from PIL import Image

    from core_model.engines.interface import PageRequest

    assert VLLM_MODES == ("gundam",)
    engine = OpenAIEngine("http://127.0.0.1:1/v1", "m", max_retries=0, connect_timeout=1)
    (result,) = engine.generate([PageRequest(image=Image.new("RGB", (64, 64)), mode="base")])
    engine.close()
    assert result.finish_reason == "error" and "'base' mode" in result.error
    assert engine.supported_modes == ("gundam",)


@pytest.mark.parametrize("size", SHAPES.values(), ids=SHAPES.keys())
def test_the_vllm_engine_sends_gundam_pages_as_vllm_reads_them_and_refuses_the_rest(
    monkeypatch, size
):
    from core_model.engines.vllm_engine import VllmEngine

    fake_vllm.install(monkeypatch)
    with VllmEngine("/models/dsocr") as engine:
        results = engine.generate([PageRequest(image=page_image(size), mode=m) for m in MODES])
        added = engine.llm.llm_engine.added
    by_mode = dict(zip(MODES, results))
    gundam = by_mode.pop("gundam")
    assert gundam.finish_reason == "eos", gundam.error
    assert gundam.num_vision_tokens == count_vision_tokens(tile_grid_for(*size, "gundam"), "gundam")
    (_, prompt, _), = added  # only the gundam page reached vLLM
    assert "mm_processor_kwargs" not in prompt
    assert prompt["multi_modal_data"]["image"].size == size  # vLLM tiles the page itself
    for mode, result in by_mode.items():
        assert result.finish_reason == "error"
        assert f"'{mode}' mode" in result.error and "native engine" in result.error


def test_the_openai_engine_refuses_other_modes_unless_the_server_honours_them():
    vllm_server = OpenAIEngine("http://127.0.0.1:1/v1", "m")
    body = vllm_server.request_body(PageRequest(image=page_image(), mode="gundam"))
    assert "mm_processor_kwargs" not in body
    for mode in MODES:
        if mode != "gundam":
            with pytest.raises(ValueError, match=f"'{mode}' mode"):
                vllm_server.request_body(PageRequest(image=page_image(), mode=mode))
    every_mode = OpenAIEngine("http://127.0.0.1:1/v1", "m", served_modes=MODES)
    for mode in MODES:
        body = every_mode.request_body(PageRequest(image=page_image(), mode=mode))
        assert body["mm_processor_kwargs"] == mode_processor_kwargs(mode)
