"""Which prompt a region gets in the second pass: by its label, then by cheap image features.

The model's own label says a block is an `image`, but not whether it is a chart, a chemical
structure, a photo or a diagram. `classify_region` looks at the crop (numpy over a small
thumbnail, about a millisecond) and names one of `chart`, `chemistry`, `photo`, `other`:
- photo: little white background and many distinct colours;
- chart: long straight axis lines or large flat areas of saturated colour (bars, pie slices);
- chemistry: a white page of thin dark strokes, most of them slanted (bonds at 30/60 degrees),
  no axes, little ink and few edges (text set as an image has many more);
- other: the rest (diagrams, text set as an image, logos).
Its accuracy on the synthetic set in tests/test_deep_routing.py is measured there and written
in docs/deep.md. `route` turns the kind and the policy into a prompt, or None to leave the
block alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsocr_connectors.document import Block, BlockType

if TYPE_CHECKING:  # numpy and pillow load when a crop is classified, not with the pipeline
    import numpy as np
    from PIL import Image

PARSE_FIGURE_PROMPT = "<image>\nParse the figure."
# DeepSeek has not published the prompt its chemistry data was trained with; its HF code tests
# for the words "structural formula". This is configurable on `RoutingPolicy`.
CHEMISTRY_PROMPT = "<image>\nParse the figure."
TABLE_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
EQUATION_PROMPT = "<image>\nFree OCR."

POLICIES = ("off", "charts", "all")


@dataclass
class RoutingPolicy:
    """`mode`: off (no second pass), charts (charts and chemistry), all (every figure, plus
    tables and equations when `tables`/`equations` are on)."""

    mode: str = "charts"
    tables: bool = False
    equations: bool = False
    chart_prompt: str = PARSE_FIGURE_PROMPT
    chemistry_prompt: str = CHEMISTRY_PROMPT
    figure_prompt: str = PARSE_FIGURE_PROMPT
    crop_mode: str = "base"  # the resolution mode crops are read in

    def __post_init__(self) -> None:
        if self.mode not in POLICIES:
            raise ValueError(f"routing mode must be one of {POLICIES}, not {self.mode!r}")


@dataclass
class Route:
    kind: str  # chart, chemistry, photo, other, table, equation
    prompt: str


def may_route(block: Block, policy: RoutingPolicy) -> bool:
    """Whether `route` can give `block` a prompt under `policy`: worth cutting its crop."""
    if policy.mode == "off":
        return False
    if block.type == BlockType.FIGURE:
        return True
    if policy.mode == "all" and policy.tables and block.type == BlockType.TABLE:
        return True
    return policy.mode == "all" and policy.equations and block.type == BlockType.EQUATION


def route(block: Block, crop: Image.Image | None, policy: RoutingPolicy) -> Route | None:
    """The second-pass prompt for `block`, or None to leave it as the first pass read it."""
    if crop is None or not may_route(block, policy):
        return None
    if block.type == BlockType.FIGURE:
        kind = classify_region(crop)
        if kind == "chart":
            return Route(kind, policy.chart_prompt)
        if kind == "chemistry":
            return Route(kind, policy.chemistry_prompt)
        return Route(kind, policy.figure_prompt) if policy.mode == "all" else None
    if block.type == BlockType.TABLE:
        return Route("table", TABLE_PROMPT)
    return Route("equation", EQUATION_PROMPT)


def region_features(image: Image.Image) -> dict[str, float]:
    """Cheap numbers about a crop, computed on a thumbnail of at most 256 pixels a side."""
    import numpy as np

    thumb = image.convert("RGB")  # a copy for an RGB crop: thumbnail() works in place
    thumb.thumbnail((256, 256))
    rgb = np.asarray(thumb)  # uint8; sums and differences below are exact in int16
    red, green, blue = (rgb[..., channel].astype(np.int16) for channel in range(3))
    gray = (red + green + blue).astype(np.float32) / 3  # what rgb.mean(axis=2) gives
    saturation = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green),
                                                                       blue)
    white = gray > 235
    ink = gray < 160
    codes = (red >> 5) * 64 + (green >> 5) * 8 + (blue >> 5)  # 8 levels a channel
    counts = np.bincount(codes.ravel(), minlength=512)
    share = counts / codes.size
    flat = share[(share > 0.02) & np.array(_SATURATED_CODES)]
    flat_colour = float(sum(flat.tolist()))  # in code order, as a plain sum
    dy = np.abs(np.diff(gray, axis=0))[:, :-1]
    dx = np.abs(np.diff(gray, axis=1))[:-1, :]
    edges = (dx + dy) > 60
    axis_aligned = ((dx > 60) & (dy < 15)) | ((dy > 60) & (dx < 15))
    slanted = edges & ~axis_aligned
    row_runs = _longest_runs(ink, axis=1) / ink.shape[1]
    col_runs = _longest_runs(ink, axis=0) / ink.shape[0]
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


def classify_region(image: Image.Image) -> str:
    """chart, chemistry, photo or other (see the module docstring for the rules)."""
    f = region_features(image)
    if f["white"] < 0.35 and f["colours"] >= 25:
        return "photo"
    has_axes = f["axis_row"] > 0.5 and f["axis_col"] > 0.5
    if has_axes or f["flat_colour"] > 0.12:
        return "chart"
    is_sparse = f["white"] > 0.9 and f["ink"] < 0.06 and 0.005 < f["edges"] < 0.08
    if is_sparse and f["slanted_edges"] > 0.45:
        return "chemistry"
    return "other"


def _is_saturated(code: int) -> bool:
    r, g, b = code // 64, (code // 8) % 8, code % 8
    return max(r, g, b) - min(r, g, b) >= 3


_SATURATED_CODES = tuple(_is_saturated(code) for code in range(512))


def _longest_runs(mask: np.ndarray, axis: int) -> np.ndarray:
    """Per row (axis=1) or column (axis=0), the longest run of True: at each place, its
    position less that of the last False up to it (a running maximum)."""
    import numpy as np

    positions = np.arange(1, mask.shape[axis] + 1).reshape((1, -1) if axis == 1 else (-1, 1))
    last_false = np.maximum.accumulate(np.where(mask, 0, positions), axis=axis)
    return (positions - last_false).max(axis=axis, initial=0).astype(np.float64)
