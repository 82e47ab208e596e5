"""Token layout, counts and batching of the DeepEncoder (`core_model.deep_encoder`).

Stub encoders make every feature say where it came from: SAM emits (view id, row, col) per
grid cell, CLIP emits a class token marked 999 and zeros elsewhere, the projector is the
identity. The layout then reads directly off the output. A tiny real encoder checks that
batching views across images changes nothing.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core_model.clip import ClipVisionTower
from core_model.config import ClipConfig, DeepseekOCRConfig, SamConfig
from core_model.deep_encoder import (
    encode_images,
    encode_views,
    grid_side,
    layout_image,
    num_vision_tokens,
)
from core_model.image_input import ImageInput
from core_model.projector import Projector
from core_model.sam import SamEncoder

NEWLINE = torch.full((4,), -1.0)
SEPARATOR = torch.full((4,), -2.0)
RELEASED = SamConfig()


class StubSam(nn.Module):
    """(B, 3, S, S) -> (B, 3, S/64, S/64) holding (view id, row, col); logs batch shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives encode_images a device and dtype
        self.calls: list[tuple[int, ...]] = []

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(pixels.shape))
        B, _, S, _ = pixels.shape
        g = S // 64
        rows = torch.arange(g, dtype=pixels.dtype).view(1, g, 1).expand(B, g, g)
        cols = torch.arange(g, dtype=pixels.dtype).view(1, 1, g).expand(B, g, g)
        ids = pixels[:, 0, :1, :1].expand(B, g, g)  # each view's constant pixel value
        return torch.stack([ids, rows, cols], dim=1)  # (B, 3, g, g)


class StubClip(nn.Module):
    def forward(self, pixels: torch.Tensor, sam_features: torch.Tensor) -> torch.Tensor:
        B, _, h, w = sam_features.shape
        out = torch.zeros(B, 1 + h * w, 1)
        out[:, 0] = 999.0  # the class token, which must never reach the output
        return out


def view(size: int, view_id: float) -> torch.Tensor:
    return torch.full((3, size, size), view_id)


def tiles(size: int, first_id: float, count: int) -> torch.Tensor:
    return torch.stack([view(size, first_id + i) for i in range(count)])


def encode(images: list[ImageInput], **kwargs) -> tuple[list[torch.Tensor], StubSam]:
    sam = StubSam()
    out = encode_images(sam, StubClip(), nn.Identity(), NEWLINE, SEPARATOR, images, **kwargs)
    return out, sam


def cell(view_id: float, row: int, col: int) -> list[float]:
    return [0.0, view_id, float(row), float(col)]  # CLIP part first, then SAM's


def test_base_layout_rows_then_newline_then_separator():
    (seq,), _ = encode([ImageInput(view(1024, 7.0))])
    assert seq.shape == (num_vision_tokens(1024, 640, (1, 1), RELEASED), 4) == (273, 4)
    for r in range(16):
        for c in range(16):
            assert seq[r * 17 + c].tolist() == cell(7.0, r, c)
        assert torch.equal(seq[r * 17 + 16], NEWLINE)
    assert torch.equal(seq[-1], SEPARATOR)
    assert not (seq == 999.0).any()


def test_gundam_layout_stitches_tiles_then_global_then_separator():
    cols, rows = 3, 2
    image = ImageInput(view(1024, 100.0), tiles(640, 10.0, cols * rows), (cols, rows))
    (seq,), _ = encode([image])
    assert len(seq) == num_vision_tokens(1024, 640, (cols, rows), RELEASED) == 20 * 31 + 273
    stitched_width = cols * 10 + 1
    for R in range(rows * 10):
        for C in range(cols * 10):
            tile = (R // 10) * cols + C // 10  # tiles are row-major on the page
            assert seq[R * stitched_width + C].tolist() == cell(10.0 + tile, R % 10, C % 10)
        assert torch.equal(seq[R * stitched_width + cols * 10], NEWLINE)
    global_part = seq[rows * 10 * stitched_width :]
    assert global_part[0].tolist() == cell(100.0, 0, 0)
    assert global_part[15].tolist() == cell(100.0, 0, 15)
    assert torch.equal(global_part[16], NEWLINE)
    assert global_part[-2].tolist() == NEWLINE.tolist()
    assert global_part[-3].tolist() == cell(100.0, 15, 15)
    assert torch.equal(seq[-1], SEPARATOR)
    assert int((seq == -1.0).all(dim=1).sum()) == 20 + 16


def test_tall_tiling_puts_tile_columns_side_by_side():
    image = ImageInput(view(1024, 0.0), tiles(640, 1.0, 2 * 3), (2, 3))
    (seq,), _ = encode([image])
    # Stitched grid: 30 rows of 20 cells + newline; row 12 crosses tile 2 (row 1, col 0) then 3.
    assert seq[12 * 21 + 0].tolist() == cell(3.0, 2, 0)
    assert seq[12 * 21 + 10].tolist() == cell(4.0, 2, 0)
    assert seq[29 * 21 + 19].tolist() == cell(6.0, 9, 9)


def test_mixed_batch_groups_views_by_size_and_keeps_order():
    images = [
        ImageInput(view(1024, 1.0)),  # base
        ImageInput(view(1024, 2.0), tiles(640, 20.0, 2), (2, 1)),  # gundam, 2 wide
        ImageInput(view(640, 3.0)),  # small
        ImageInput(view(512, 4.0)),  # tiny
    ]
    seqs, sam = encode(images)
    assert sorted(sam.calls) == sorted([(2, 3, 1024, 1024), (3, 3, 640, 640), (1, 3, 512, 512)])
    expected = [(1024, (1, 1)), (1024, (2, 1)), (640, (1, 1)), (512, (1, 1))]
    for seq, image, (size, grid) in zip(seqs, images, expected, strict=True):
        assert len(seq) == num_vision_tokens(size, 640, grid, RELEASED)
        assert seq[-2].tolist() == NEWLINE.tolist() and torch.equal(seq[-1], SEPARATOR)
        assert seq[-3][1].item() == image.global_view[0, 0, 0].item()
    assert seqs[1][0].tolist() == cell(20.0, 0, 0)
    assert seqs[1][10].tolist() == cell(21.0, 0, 0)
    assert [len(s) for s in seqs] == [273, 273 + 21 * 10, 111, 73]


def test_max_views_per_call_splits_calls_not_results():
    images = [ImageInput(view(640, float(i))) for i in range(5)]
    whole, sam = encode(images)
    split, split_sam = encode(images, max_views_per_call=2)
    assert sam.calls == [(5, 3, 640, 640)]
    assert split_sam.calls == [(2, 3, 640, 640), (2, 3, 640, 640), (1, 3, 640, 640)]
    for a, b in zip(whole, split, strict=True):
        assert torch.equal(a, b)


def released_count(base_size: int, tile_size: int, grid: tuple[int, int]) -> int:
    """The `<image>` ids the released `infer` puts in the prompt (patch 16, downsample 4)."""
    queries_base = math.ceil((base_size // 16) / 4)
    count = (queries_base + 1) * queries_base + 1
    width_tiles, height_tiles = grid
    if width_tiles > 1 or height_tiles > 1:
        queries = math.ceil((tile_size // 16) / 4)
        count += (queries * width_tiles + 1) * (queries * height_tiles)
    return count


@pytest.mark.parametrize(
    ("global_size", "grid"),
    [(512, (1, 1)), (640, (1, 1)), (1024, (1, 1)), (1280, (1, 1))]
    + [(1024, g) for g in [(2, 1), (1, 2), (3, 2), (2, 3), (3, 3), (1, 9), (4, 2)]],
)
def test_num_vision_tokens_matches_the_released_prompt(global_size, grid):
    got = num_vision_tokens(global_size, 640, grid, RELEASED)
    assert got == released_count(global_size, 640, grid)
    assert got == num_vision_tokens(global_size, 640, grid, DeepseekOCRConfig())


def test_grid_side_rounds_up_like_the_strided_convolutions():
    assert [grid_side(s, RELEASED) for s in (512, 640, 1024, 1280, 1000)] == [8, 10, 16, 20, 16]


def test_image_input_rejects_inconsistent_tiles():
    with pytest.raises(ValueError, match="needs 6 tiles, got 4"):
        ImageInput(view(64, 0.0), tiles(32, 0.0, 4), (3, 2))
    with pytest.raises(ValueError, match="no tiles were given"):
        ImageInput(view(64, 0.0), None, (2, 1))
    with pytest.raises(ValueError, match="single tile"):
        ImageInput(view(64, 0.0), tiles(32, 0.0, 1), (1, 1))
    with pytest.raises(ValueError, match=r"global_view must be \(3, S, S\)"):
        ImageInput(torch.zeros(64, 64))
    with pytest.raises(ValueError, match=r"tiles must be \(n, 3, T, T\)"):
        ImageInput(view(64, 0.0), torch.zeros(2, 64, 64), (2, 1))


def test_real_encoder_batched_equals_one_view_at_a_time():
    """Tiny real SAM/CLIP/projector: batching across images gives the per-view result."""
    torch.manual_seed(0)
    sam = SamEncoder(
        SamConfig(width=16, layers=2, heads=2, global_attn_indexes=(1,), mlp_dim=32,
                  out_chans=8, downsample_channels=(16, 32))
    ).eval()  # fmt: skip
    clip = ClipVisionTower(ClipConfig(width=32, layers=1, heads=2, mlp_dim=32)).eval()
    projector = Projector(64, 12)
    newline, separator = torch.randn(12), torch.randn(12)
    images = [
        ImageInput(torch.randn(3, 256, 256), torch.randn(2, 3, 128, 128), (1, 2)),
        ImageInput(torch.randn(3, 256, 256)),
        ImageInput(torch.randn(3, 128, 128)),
    ]
    with torch.no_grad():
        batched = encode_images(sam, clip, projector, newline, separator, images)
        for image, seq in zip(images, batched, strict=True):
            global_grid = encode_views(sam, clip, projector, image.global_view[None])[0]
            tile_grids = None
            if image.tiles is not None:
                tile_grids = torch.cat(
                    [encode_views(sam, clip, projector, t[None]) for t in image.tiles]
                )
            alone = layout_image(global_grid, tile_grids, image.tile_grid, newline, separator)
            assert seq.shape == alone.shape
            assert (seq - alone).abs().max().item() <= 1e-5
    assert [len(s) for s in batched] == [4 * 5 + 1 + (2 + 1) * 4, 21, 2 * 3 + 1]


def test_no_images_no_calls():
    seqs, sam = encode([])
    assert seqs == [] and sam.calls == []


def test_sam_attention_equals_the_explicit_relative_position_bias():
    """The extended query/key form equals softmax(q.k / sqrt(d) + bias) with SAM's bias
    bias[(qh, qw), (kh, kw)] = q . Rh[qh - kh] + q . Rw[qw - kw], for square and tall grids,
    with a head size whose 1 / sqrt(d) is a power of two (16: SDPA scales) and one whose is
    not (8: the query is scaled itself)."""
    import core_model.sam as sam

    torch.manual_seed(3)
    for heads in (2, 4):
        hd = 32 // heads
        attention = sam.Attention(width=32, heads=heads, trained_size=8)
        for p in attention.parameters():
            torch.nn.init.normal_(p, std=0.2)
        for H, W in ((8, 8), (6, 9)):
            x = torch.randn(3, H, W, 32)
            q, k, v = attention.qkv(x).view(3, H * W, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
            Rh = sam.relative_position_table(H, attention.rel_pos_h)
            Rw = sam.relative_position_table(W, attention.rel_pos_w)
            grid = q.reshape(3, heads, H, W, hd)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, Rh)
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, Rw)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(3, heads, H * W, H * W)
            scores = q @ k.transpose(-1, -2) / hd**0.5 + bias
            ref = (scores.softmax(-1) @ v).transpose(1, 2).reshape(3, H, W, 32)
            assert torch.allclose(attention(x), attention.proj(ref), atol=1e-5)


def test_windows_equal_the_padded_grid_cut_into_windows():
    """`to_windows` equals zero-padding the grid to a multiple of the window and cutting it
    (SAM's window partition); `add_windows` equals putting the windows back, dropping the
    padding and adding: for grids that fit the window, that do not, and smaller ones."""
    import torch.nn.functional as F

    from core_model.sam import add_windows, to_windows

    for H, W, S in ((64, 64, 14), (40, 40, 14), (14, 14, 14), (6, 9, 4), (3, 5, 7), (28, 15, 14)):
        x = torch.randn(2, H, W, 3)
        Hp, Wp = -(-H // S) * S, -(-W // S) * S
        padded = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        expected = padded.view(2, Hp // S, S, Wp // S, S, 3).transpose(2, 3).reshape(-1, S, S, 3)
        assert torch.equal(to_windows(x, S), expected)
        windows = torch.randn_like(expected)
        grid = windows.view(2, Hp // S, Wp // S, S, S, 3).transpose(2, 3).reshape(2, Hp, Wp, 3)
        assert torch.equal(add_windows(x, windows), x + grid[:, :H, :W])
        with_grad = add_windows(x.requires_grad_(), windows)  # the differentiable path
        assert with_grad.requires_grad and torch.equal(with_grad, x + grid[:, :H, :W])
