"""DeepSeek-OCR-2 against transformers' `deepseek_ocr2`, the same random weights, fp32 on CPU.

For every mode the release defines (small: 768 px squashed; base: 1024 px padded; gundam
without and with 768-px tiles): the vision-token sequences, the logits over the whole prompt
and the greedy tokens equal transformers' (`tests/ocr2_reference.py` copies the weights).
Also: the parameter names and sizes of the released checkpoint, the token counts, and
preprocessing against transformers' image processor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core_model.config import DeepseekOCR2Config, config_from_dict
from core_model.deep_encoder_v2 import num_vision_tokens
from core_model.engines.kv_cache import KVCache
from core_model.model import DeepseekOCRForCausalLM
from core_model.modes import get_mode
from core_model.prompt import GROUNDING_MARKDOWN, build_prompt_ids
from tests.conftest import TINY_OCR2_CONFIG, randomize_

transformers_ocr2 = pytest.importorskip("transformers.models.deepseek_ocr2")
from tests.ocr2_reference import reference_inputs, reference_model  # noqa: E402

LOGIT_TOL = 2e-4
VISION_TOL = 1e-4
OCR2 = "deepseek-ocr-2"
# (mode, page size, expected tile grid): every layout the release defines. (Gundam on a page
# no larger than one 768 tile is base's layout: see test_small_pages_get_no_tiles_in_gundam.)
CASES = [
    ("small", (900, 700), (1, 1)),
    ("base", (1100, 800), (1, 1)),
    ("gundam", (1600, 800), (2, 1)),
]
STEPS = 8


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """Small matrices: one thread, no OpenMP wake-ups on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    ours = DeepseekOCRForCausalLM(config_from_dict(TINY_OCR2_CONFIG)).eval()
    randomize_(ours, seed=1)
    return ours, reference_model(ours)


@pytest.fixture(scope="module")
def tokenizer(real_tokenizer_path):
    from core_model.tokenizer import load_tokenizer

    return load_tokenizer(real_tokenizer_path.parent)


def page(size: tuple[int, int], seed: int) -> Image.Image:
    """A page with structure at every scale: coarse random blocks, smoothed, plus noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    noise = rng.integers(-30, 30, (h, w, 1), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def greedy(model, embeds: torch.Tensor, steps: int) -> tuple[list[int], torch.Tensor]:
    """Our greedy decoding as the engine runs it: prefill into a KV-cache slot, then one
    cached decode step per token.

    Returns:
        The tokens and the logits (steps, V) each was chosen from.
    """
    length = embeds.shape[0]
    cache = KVCache.contiguous(model.config.decoder, 1, length + steps, device="cpu",
                               dtype=embeds.dtype)
    cache.bind(model)
    slot = torch.tensor([0])
    prefill = cache.prefill_context(slot, torch.tensor([length]), length)
    hidden = model(embeds[None], torch.arange(length)[None], prefill)[:, -1]
    tokens, logits = [], []
    for position in range(length, length + steps):
        logits.append(model.compute_logits(hidden[0]))
        tokens.append(int(logits[-1].argmax()))
        step = cache.decode_context(slot, torch.tensor([position]), use_kernel=False,
                                    span=position + 1)
        token = torch.tensor([[tokens[-1]]])
        hidden = model(model.embed(token), torch.tensor([[position]]), step)[:, -1]
    return tokens, torch.stack(logits)


@pytest.mark.parametrize(("mode", "size", "grid"), CASES)
def test_mode_matches_transformers(pair, tokenizer, mode, size, grid):
    """Vision tokens, the logits of every greedy step and the greedy tokens agree."""
    ours, theirs = pair
    image = ours.prepare_image(page(size, seed=size[0]), mode)
    assert image.tile_grid == grid
    m = get_mode(mode, OCR2)
    count = num_vision_tokens(m.base_size, m.image_size, grid, ours.config)
    prompt = build_prompt_ids(tokenizer, GROUNDING_MARKDOWN, count)
    ids = torch.tensor(prompt.ids)
    inputs = reference_inputs([image])

    with torch.no_grad():
        vision = ours.encode_images([image])[0]
        want_vision = theirs.get_image_features(**inputs).pooler_output[0]
        assert vision.shape == (count, 64) == want_vision.shape
        assert vision.abs().mean() > 0.1
        assert (vision - want_vision).abs().max().item() <= VISION_TOL

        tokens, logits = greedy(ours, ours.embed(ids, torch.tensor(prompt.image_mask), vision), STEPS)
        generated = theirs.generate(
            input_ids=ids[None], **inputs, max_new_tokens=STEPS, do_sample=False,
            eos_token_id=None, pad_token_id=tokenizer.pad_id,
            output_logits=True, return_dict_in_generate=True,
        )
    want_logits = torch.cat(generated.logits)  # (steps, V)
    assert logits.abs().mean() > 0.1
    assert (logits - want_logits).abs().max().item() <= LOGIT_TOL
    assert tokens == generated.sequences[0, len(ids) :].tolist()


def test_small_pages_get_no_tiles_in_gundam(pair):
    """A page within 768 x 768 is read as in base mode: one 1024-px padded view."""
    ours, _ = pair
    image = page((700, 500), seed=9)
    gundam, base = ours.prepare_image(image, "gundam"), ours.prepare_image(image, "base")
    assert gundam.tiles is None and gundam.tile_grid == (1, 1)
    assert torch.equal(gundam.global_view, base.global_view)
    assert ours.prepare_image(page((800, 700), seed=9), "gundam").tile_grid != (1, 1)


def test_view_sizes_without_queries_are_refused(pair):
    """DeepSeek-OCR's 640-px tiles (or 512/1280 views) have no learned queries in OCR-2."""
    ours, _ = pair
    from core_model.preprocess import prepare_image

    ocr1_gundam = prepare_image(page((1400, 900), seed=3), "gundam")  # 640-px tiles
    with pytest.raises(ValueError, match="768 px \\(144 tokens\\), 1024 px \\(256 tokens\\)"):
        ours.encode_images([ocr1_gundam])
    for mode in ("tiny", "large"):
        with pytest.raises(ValueError, match="small, base, gundam"):
            ours.prepare_image(page((800, 600), seed=4), mode)


@pytest.mark.parametrize(
    ("mode", "grid", "count"),
    [("small", (1, 1), 145), ("base", (1, 1), 257), ("gundam", (1, 1), 257),
     ("gundam", (3, 2), 257 + 6 * 144), ("gundam", (1, 2), 257 + 2 * 144)],
)
def test_token_counts_follow_the_release(mode, grid, count):
    """The released tokenizer side: g*g + 1, plus (t*cols) * (t*rows) image ids for tiles."""
    m = get_mode(mode, OCR2)
    cfg = DeepseekOCR2Config()
    assert num_vision_tokens(m.base_size, m.image_size, grid, cfg) == count


@pytest.mark.parametrize("size", [(1200, 900), (1600, 800), (700, 500), (2000, 1000)])
def test_gundam_pixels_equal_transformers_image_processor(size):
    """Tiles and global view equal transformers' processor where both pad alike (see
    docs/ocr2.md: transformers centres the padded view with floor, the release with round)."""
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessorPil,
    )

    image = page(size, seed=size[1])
    ours = get_mode("gundam", OCR2)
    from core_model.preprocess import prepare_image

    mine = prepare_image(image, ours)
    theirs = DeepseekOcr2ImageProcessorPil()(image, return_tensors="pt")
    assert torch.equal(mine.global_view, theirs["pixel_values"][0])
    assert int(theirs["num_local_patches"][0]) == (0 if mine.tiles is None else len(mine.tiles))
    if mine.tiles is not None:
        assert torch.equal(mine.tiles, theirs["pixel_values_local"])


def test_released_parameter_names_and_sizes():
    """At released sizes (meta device): shapes read from the released code, and as many
    names (2,707) as the released `model.safetensors.index.json` lists (the same names)."""
    with torch.device("meta"):
        model = DeepseekOCRForCausalLM(DeepseekOCR2Config())
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes["model.sam_model.net_3.weight"] == (896, 512, 3, 3)
    assert shapes["model.qwen2_model.query_768.weight"] == (144, 896)
    assert shapes["model.qwen2_model.query_1024.weight"] == (256, 896)
    assert shapes["model.qwen2_model.model.model.layers.23.self_attn.k_proj.weight"] == (128, 896)
    assert shapes["model.qwen2_model.model.model.layers.0.self_attn.q_proj.bias"] == (896,)
    assert shapes["model.qwen2_model.model.model.norm.weight"] == (896,)
    assert shapes["model.projector.layers.weight"] == (1280, 896)
    assert shapes["model.view_seperator"] == (1280,)
    assert shapes["model.layers.3.mlp.experts.63.down_proj.weight"] == (1280, 896)
    assert not any("image_newline" in n or "vision_model" in n for n in shapes)
    assert len(shapes) == 2707
