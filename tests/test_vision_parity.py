"""Parity of the DeepEncoder's SAM and CLIP parts with independent references (fp32, CPU).

SAM (with neck and compressor) is compared with transformers' `deepseek_ocr2` SAM encoder,
the same design, using its eager (non-SDPA) attention. The CLIP stack is compared with
transformers' `CLIPVisionModel`, the fused qkv split into q, k, v. The position-embedding
resize, where transformers' CLIP differs from the release (no antialiasing), is checked
against PIL's float bicubic resampling. Tiny random models; tolerance 1e-5 absolute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
    DeepseekOcr2SamVisionConfig,
)
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2SamVisionEncoder,
)

from core_model.clip import ClipVisionTower
from core_model.config import ClipConfig, DeepseekOCRConfig, SamConfig
from core_model.projector import Projector
from core_model.sam import SamEncoder, interpolate_grid
from tests.ocr2_reference import to_transformers_sam_name

TOLERANCE = 1e-5
REPO = Path(__file__).resolve().parents[1]
WEIGHT_NAMES = REPO / "tests" / "data" / "reference" / "weight_names.txt"

# Released geometry (1024 px, 16 px patches, window 14), tiny widths.
SAM_CFG = SamConfig(
    width=24,
    layers=4,
    heads=2,
    global_attn_indexes=(1, 3),
    downsample_channels=(20, 28),
    mlp_dim=48,
    out_chans=16,
)
# 64 px / 4 px patches: a 16x16 grid and 257 positions, as CLIP-L/14 at 224 px.
CLIP_CFG = ClipConfig(width=32, layers=3, heads=4, mlp_dim=64, image_size=64, patch_size=4)


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter a non-trivial value (no zero rel-pos tables, no unit norms)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "embed" in name or "rel_pos" in name:
                p.copy_(0.5 * noise)
            elif p.ndim >= 2:  # linear and conv weights: unit-variance outputs
                p.copy_(noise / p[0].numel() ** 0.5)
            elif name.endswith("weight"):  # norm scales
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


@pytest.fixture(scope="module")
def sam_pair() -> tuple[SamEncoder, DeepseekOcr2SamVisionEncoder]:
    ours = SamEncoder(SAM_CFG).eval()
    randomize_(ours, seed=0)
    config = DeepseekOcr2SamVisionConfig(
        hidden_size=SAM_CFG.width,
        output_channels=SAM_CFG.out_chans,
        num_hidden_layers=SAM_CFG.layers,
        num_attention_heads=SAM_CFG.heads,
        global_attn_indexes=list(SAM_CFG.global_attn_indexes),
        mlp_dim=SAM_CFG.mlp_dim,
        downsample_channels=list(SAM_CFG.downsample_channels),
        window_size=SAM_CFG.window_size,
        image_size=SAM_CFG.image_size,
        patch_size=SAM_CFG.patch_size,
    )
    config._attn_implementation = "eager"
    reference = DeepseekOcr2SamVisionEncoder(config).eval()
    state = {to_transformers_sam_name(k): v for k, v in ours.state_dict().items()}
    reference.load_state_dict(state, strict=True)
    return ours, reference


@pytest.mark.parametrize(
    ("height", "width", "out_grid"),
    [
        (1024, 1024, (16, 16)),  # trained grid 64: windows fit exactly, no interpolation
        (640, 640, (10, 10)),  # grid 40: windows padded to 42, pos/rel-pos resized
        (512, 512, (8, 8)),  # grid 32: windows padded to 42
        (1280, 448, (20, 7)),  # non-square grid 80 x 28: pos/rel-pos enlarged on one axis
    ],
)
def test_sam_matches_transformers_deepseek_ocr2(sam_pair, height, width, out_grid):
    ours, reference = sam_pair
    assert reference.layers[0].attn.__class__.__name__ == "DeepseekOcr2SamVisionAttention"
    pixels = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height))
    with torch.no_grad():
        got = ours(pixels)
        want = reference(pixels).last_hidden_state
    assert got.shape == (1, SAM_CFG.downsample_channels[-1], *out_grid)
    assert got.abs().mean() > 0.1  # a meaningful scale for an absolute tolerance
    assert (got - want).abs().max().item() <= TOLERANCE


def clip_reference(ours: ClipVisionTower) -> CLIPVisionModel:
    """transformers' CLIP with our weights, the fused qkv split into q, k, v."""
    config = CLIPVisionConfig(
        hidden_size=CLIP_CFG.width,
        intermediate_size=CLIP_CFG.mlp_dim,
        num_hidden_layers=CLIP_CFG.layers,
        num_attention_heads=CLIP_CFG.heads,
        image_size=CLIP_CFG.image_size,
        patch_size=CLIP_CFG.patch_size,
        hidden_act="quick_gelu",
        layer_norm_eps=CLIP_CFG.layer_norm_eps,
    )
    config._attn_implementation = "eager"
    reference = CLIPVisionModel(config).eval()
    state = {}
    for name, value in ours.state_dict().items():
        name = name.replace("transformer.layers", "encoder.layers")
        if name == "embeddings.position_ids":  # a buffer transformers does not save
            assert torch.equal(value, torch.arange(CLIP_CFG.num_positions)[None])
        elif "qkv_proj" in name:
            for part, chunk in zip("qkv", value.chunk(3), strict=True):
                state[name.replace("qkv_proj", f"{part}_proj")] = chunk
        else:
            state[name] = value
    post_ln = reference.post_layernorm.state_dict()
    state |= {f"post_layernorm.{k}": v for k, v in post_ln.items()}
    reference.load_state_dict(state, strict=True)
    return reference


@pytest.fixture(scope="module")
def clip_pair() -> tuple[ClipVisionTower, CLIPVisionModel]:
    ours = ClipVisionTower(CLIP_CFG).eval()
    randomize_(ours, seed=1)
    return ours, clip_reference(ours)


def test_clip_pixel_path_matches_transformers(clip_pair):
    """Plain CLIP (own patch convolution, trained grid): the full tower agrees."""
    ours, reference = clip_pair
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = ours(pixels)
        want = reference(pixel_values=pixels).last_hidden_state  # before post-LN
    assert got.shape == (2, 257, CLIP_CFG.width)
    assert (got - want).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("grid", [(16, 16), (10, 10), (20, 20), (8, 8)])
def test_clip_over_sam_features_matches_transformers_stack(clip_pair, grid):
    """SAM features as patch embeddings: pre-LN + encoder agree on identical embeddings."""
    ours, reference = clip_pair
    gen = torch.Generator().manual_seed(grid[0])
    features = torch.randn(2, CLIP_CFG.width, *grid, generator=gen)
    pixels = torch.zeros(2, 3, 1, 1)  # unused when features are given
    with torch.no_grad():
        got = ours(pixels, features)
        embeddings = ours.embeddings(pixels, features)
        hidden = reference.pre_layrnorm(embeddings)
        want = reference.encoder(inputs_embeds=hidden).last_hidden_state
    assert got.shape == (2, 1 + grid[0] * grid[1], CLIP_CFG.width)
    assert (got - want).abs().max().item() <= TOLERANCE


def pil_bicubic(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float grid resized per channel by PIL (antialiased bicubic, a = -0.5)."""
    height, width = size
    resample = Image.Resampling.BICUBIC
    channels = [Image.fromarray(c, mode="F").resize((width, height), resample) for c in grid]
    return np.stack([np.asarray(c) for c in channels])


@pytest.mark.parametrize("size", [(10, 10), (20, 20), (8, 8), (16, 16), (7, 12)])
def test_clip_embeddings_resize_positions_like_the_release(clip_pair, size):
    """Class token first; grid tokens row-major; positions resized 16x16 -> h x w."""
    ours, _ = clip_pair
    h, w = size
    gen = torch.Generator().manual_seed(h * w)
    features = torch.randn(1, CLIP_CFG.width, h, w, generator=gen)
    with torch.no_grad():
        got = ours.embeddings(torch.zeros(1, 3, 1, 1), features)[0]
        table = ours.embeddings.position_embedding.weight.numpy()
        cls = ours.embeddings.class_embedding.numpy()
    grid_pos = table[1:].reshape(16, 16, -1).transpose(2, 0, 1)  # (D, 16, 16)
    resized = pil_bicubic(np.ascontiguousarray(grid_pos), size)  # (D, h, w)
    want_grid = features[0].numpy() + resized  # (D, h, w)
    assert got.shape == (1 + h * w, CLIP_CFG.width)
    np.testing.assert_allclose(got[0].numpy(), cls + table[0], atol=TOLERANCE, rtol=0)
    for r, c in [(0, 0), (0, w - 1), (h - 1, 0), (h // 2, w // 3)]:
        np.testing.assert_allclose(got[1 + r * w + c].numpy(), want_grid[:, r, c], atol=TOLERANCE)
    np.testing.assert_allclose(
        got[1:].numpy(), want_grid.reshape(CLIP_CFG.width, -1).T, atol=TOLERANCE, rtol=0
    )


def test_resize_is_antialiased_not_plain_bicubic():
    """The release's choice matters: plain bicubic (transformers' CLIP) differs by far more."""
    gen = torch.Generator().manual_seed(3)
    grid = torch.randn(1, 4, 64, 64, generator=gen)
    ours = interpolate_grid(grid, (40, 40))
    pil = torch.from_numpy(pil_bicubic(grid[0].numpy(), (40, 40)))[None]
    plain = torch.nn.functional.interpolate(grid, (40, 40), mode="bicubic", align_corners=False)
    assert (ours - pil).abs().max().item() <= TOLERANCE
    assert (plain - pil).abs().max().item() > 0.1
    assert interpolate_grid(grid, (64, 64)) is grid  # trained size: untouched


@pytest.mark.skipif(not WEIGHT_NAMES.exists(), reason="reference weight names not present")
def test_parameter_names_equal_the_released_checkpoint():
    """At released sizes (built on the meta device) the names are exactly the checkpoint's."""
    cfg = DeepseekOCRConfig.from_json(WEIGHT_NAMES.with_name("config.json"))
    released = set(WEIGHT_NAMES.read_text().split())
    with torch.device("meta"):
        modules = {
            "model.sam_model.": SamEncoder(cfg.sam),
            "model.vision_model.": ClipVisionTower(cfg.clip),
            "model.projector.": Projector(cfg.projector_input_dim, cfg.decoder.hidden_size),
        }
    for prefix, module in modules.items():
        ours = {prefix + name for name in module.state_dict()}
        assert ours == {name for name in released if name.startswith(prefix)}, prefix
    assert "model.vision_model.embeddings.position_ids" in released


def test_clip_rejects_sam_features_of_the_wrong_width(clip_pair):
    ours, _ = clip_pair
    with pytest.raises(ValueError, match="channels"):
        ours(torch.zeros(1, 3, 1, 1), torch.zeros(1, CLIP_CFG.width + 1, 4, 4))
