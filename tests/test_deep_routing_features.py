"""`region_features` (vectorised) gives the numbers of its first, plain implementation.

`reference_features` is that implementation, kept here as it was: a Python loop over the
columns for the longest ink runs, float32 channel means, a loop over the 512 colour codes.
The fast one must match it exactly on every kind of crop the router sees, so that
`classify_region` never decides differently.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dsocr_connectors.deep.routing import _longest_runs, classify_region, region_features


def reference_features(image: Image.Image) -> dict[str, float]:
    thumb = image.convert("RGB")
    thumb.thumbnail((256, 256))
    rgb = np.asarray(thumb, dtype=np.float32)
    gray = rgb.mean(axis=2)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    white = gray > 235
    ink = gray < 160
    quantised = (rgb // 32).astype(np.int32)
    codes = quantised[..., 0] * 64 + quantised[..., 1] * 8 + quantised[..., 2]
    counts = np.bincount(codes.ravel(), minlength=512)
    share = counts / codes.size
    flat_colour = float(sum(s for code, s in enumerate(share)
                            if s > 0.02 and _reference_is_saturated(code)))
    dy = np.abs(np.diff(gray, axis=0))[:, :-1]
    dx = np.abs(np.diff(gray, axis=1))[:-1, :]
    edges = (dx + dy) > 60
    axis_aligned = ((dx > 60) & (dy < 15)) | ((dy > 60) & (dx < 15))
    slanted = edges & ~axis_aligned
    row_runs = _reference_longest_runs(ink, axis=1) / ink.shape[1]
    col_runs = _reference_longest_runs(ink, axis=0) / ink.shape[0]
    return {
        "white": float(white.mean()),
        "ink": float(ink.mean()),
        "colours": float((share > 0.002).sum()),
        "saturated": float((saturation > 80).mean()),
        "flat_colour": flat_colour,
        "slanted_edges": float(slanted.sum() / max(edges.sum(), 1)),
        "edges": float(edges.mean()),
        "axis_row": float(row_runs.max(initial=0.0)),
        "axis_col": float(col_runs.max(initial=0.0)),
    }


def _reference_is_saturated(code: int) -> bool:
    r, g, b = code // 64, (code // 8) % 8, code % 8
    return max(r, g, b) - min(r, g, b) >= 3


def _reference_longest_runs(mask: np.ndarray, axis: int) -> np.ndarray:
    lines = mask if axis == 1 else mask.T
    best = np.zeros(lines.shape[0])
    current = np.zeros(lines.shape[0])
    for column in lines.T:
        current = np.where(column, current + 1, 0)
        best = np.maximum(best, current)
    return best


def _crops() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(7)
    crops = []
    noise = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    crops.append(("noise", Image.fromarray(noise)))
    smooth = np.clip(np.linspace(0, 255, 640)[None, :, None] + rng.normal(0, 20, (900, 640, 3)),
                     0, 255).astype(np.uint8)
    crops.append(("photo, large", Image.fromarray(smooth)))
    chart = Image.new("RGB", (1400, 900), "white")
    draw = ImageDraw.Draw(chart)
    draw.line([(120, 60), (120, 800), (1350, 800)], fill="black", width=4)
    for k, height in enumerate((300, 520, 180, 640)):
        draw.rectangle([200 + 280 * k, 800 - height, 380 + 280 * k, 800], fill=(214, 39, 40))
    crops.append(("bar chart", chart))
    pie = Image.new("RGB", (500, 500), "white")
    ImageDraw.Draw(pie).pieslice([50, 50, 450, 450], 0, 230, fill=(31, 119, 180))
    crops.append(("pie", pie))
    bonds = Image.new("RGB", (480, 360), "white")
    draw = ImageDraw.Draw(bonds)
    for k in range(6):
        x, y = 120 + 40 * k, 180 + (25 if k % 2 else -25)
        draw.line([(x, y), (x + 40, y + (-50 if k % 2 else 50))], fill="black", width=2)
    crops.append(("line drawing", bonds))
    text = Image.new("RGB", (700, 260), "white")
    draw = ImageDraw.Draw(text)
    for row in range(10):
        draw.text((10, 10 + 24 * row), "The quick brown fox jumps over the lazy dog " * 2,
                  fill="black")
    crops.append(("text", text))
    crops.append(("blank", Image.new("RGB", (300, 200), "white")))
    crops.append(("all ink", Image.new("RGB", (64, 64), "black")))
    crops.append(("small", Image.fromarray(noise[:16, :16])))
    crops.append(("a sliver", Image.fromarray(np.repeat(noise[:20], 100, axis=1)[:, :2000])))
    crops.append(("exactly 256", Image.fromarray(noise[:256, :256])))
    crops.append(("grey L", text.convert("L")))
    crops.append(("palette P", chart.convert("P", palette=Image.Palette.ADAPTIVE)))
    crops.append(("RGBA", Image.fromarray(np.dstack([smooth, smooth[..., :1]]), "RGBA")))
    return crops


@pytest.mark.parametrize(("name", "image"), _crops(), ids=[name for name, _ in _crops()])
def test_features_and_class_match_the_reference(name, image):
    reference = reference_features(image)
    assert region_features(image) == reference  # bit for bit, not just close
    assert classify_region(image) == _reference_classify(reference)


def test_features_match_on_the_synthetic_figure_set():
    from region_samples import make_samples

    for kind, image in make_samples(seed=3, per_kind=4):
        assert region_features(image) == reference_features(image), kind


def test_longest_runs_matches_the_loop():
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) < p for p in (0.1, 0.5, 0.9)]
    masks += [np.ones((5, 9), bool), np.zeros((5, 9), bool), np.ones((1, 1), bool),
              np.zeros((4, 0), bool)]
    for mask in masks:
        for axis in (0, 1):
            assert np.array_equal(_longest_runs(mask, axis), _reference_longest_runs(mask, axis))


def _reference_classify(f: dict[str, float]) -> str:
    if f["white"] < 0.35 and f["colours"] >= 25:
        return "photo"
    if (f["axis_row"] > 0.5 and f["axis_col"] > 0.5) or f["flat_colour"] > 0.12:
        return "chart"
    is_sparse = f["white"] > 0.9 and f["ink"] < 0.06 and 0.005 < f["edges"] < 0.08
    return "chemistry" if is_sparse and f["slanted_edges"] > 0.45 else "other"
