"""Reading order of the boxes on a page: columns, bands, then top to bottom.

The content stream's order is not the reading order (an invoice generator may write its
footer first, a layout program its right column first), so the order comes from geometry:
1. Gutters: x-ranges of the page that no narrow box (under `WIDE` of the text width)
   covers, with text on both sides: the gaps between columns.
2. Boxes that reach over a gutter's middle (a title over both columns, a full-width table,
   a page number in the gutter) cut the page into bands; bands are read top to bottom, each crossing box between the bands it
   separates.
3. Inside a band, recursive XY-cut: first at horizontal gaps of at least `BAND_GAP` line
   heights that run across the whole band (an invoice's letterhead above its addresses),
   then at vertical gaps (the columns, left to right), then top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median
from typing import TypeVar

Box = tuple[float, float, float, float]
T = TypeVar("T")

WIDE = 0.6  # a box wider than this share of the text width never makes a column
GUTTER_COVER = 0.1  # a gutter is covered by less than this share of the busiest x
MIN_GUTTER = 6.0  # points
BAND_GAP = 1.5  # line heights


def reading_order(items: Sequence[T], box: Callable[[T], Box], line_height: float) -> list[T]:
    """`items` in reading order (rules in the module docstring).

    Args:
        items: anything with a box.
        box: gives an item's box in points (x0, y0, x1, y1), origin top-left.
        line_height: the page's usual line height in points (sets the band gap).
    """
    if len(items) < 2:
        return list(items)
    boxes = [box(item) for item in items]
    left, right = min(b[0] for b in boxes), max(b[2] for b in boxes)
    gutters = _gutters([b for b in boxes if b[2] - b[0] < WIDE * (right - left)], left, right)
    crossing = sorted((i for i, b in enumerate(boxes) if _crosses(b, gutters)),
                      key=lambda i: boxes[i][1])
    bands: list[list[int]] = [[] for _ in range(len(crossing) + 1)]
    for i, b in enumerate(boxes):
        if i in crossing:
            continue
        center = (b[1] + b[3]) / 2
        bands[sum(1 for c in crossing if boxes[c][1] < center)].append(i)
    order: list[int] = []
    for number, band in enumerate(bands):
        order.extend(_xy_cut(band, boxes, BAND_GAP * line_height))
        if number < len(crossing):
            order.append(crossing[number])
    return [items[i] for i in order]


def _gutters(boxes: list[Box], left: float, right: float) -> list[tuple[float, float]]:
    """x-ranges between columns: nearly uncovered by `boxes`, with cover on both sides."""
    if not boxes:
        return []
    events = sorted([(b[0], b[3] - b[1]) for b in boxes] + [(b[2], b[1] - b[3]) for b in boxes])
    steps: list[tuple[float, float]] = []  # (x, cover from x on)
    cover = 0.0
    for x, change in events:
        cover += change
        if steps and steps[-1][0] == x:
            steps[-1] = (x, cover)
        else:
            steps.append((x, cover))
    busiest = max(c for _, c in steps)
    runs: list[tuple[float, float]] = []
    for (x0, amount), (x1, _) in zip(steps, steps[1:]):
        if amount <= GUTTER_COVER * busiest:
            if runs and runs[-1][1] == x0:
                runs[-1] = (runs[-1][0], x1)
            else:
                runs.append((x0, x1))
    return [(x0, x1) for x0, x1 in runs if x0 > left and x1 < right and x1 - x0 >= MIN_GUTTER]


def _crosses(box: Box, gutters: list[tuple[float, float]]) -> bool:
    """Whether a box reaches over a gutter's middle (over both columns, or sitting in the
    gutter); a column's line that sticks out a little into the gutter does not."""
    return any(box[0] < (g0 + g1) / 2 < box[2] for g0, g1 in gutters)


def _xy_cut(indexes: list[int], boxes: list[Box], band_gap: float) -> list[int]:
    if len(indexes) < 2:
        return indexes
    for axis, gap in ((1, band_gap), (0, MIN_GUTTER)):
        parts = _split(indexes, boxes, axis, gap)
        if len(parts) > 1:
            return [i for part in parts for i in _xy_cut(part, boxes, band_gap)]
    return sorted(indexes, key=lambda i: (boxes[i][1], boxes[i][0]))


def _split(indexes: list[int], boxes: list[Box], axis: int, min_gap: float) -> list[list[int]]:
    """Split where the projection on `axis` (0: x, 1: y) has a gap of at least `min_gap`."""
    ordered = sorted(indexes, key=lambda i: boxes[i][axis])
    parts = [[ordered[0]]]
    reach = boxes[ordered[0]][axis + 2]
    for i in ordered[1:]:
        if boxes[i][axis] - reach >= min_gap:
            parts.append([])
        parts[-1].append(i)
        reach = max(reach, boxes[i][axis + 2])
    return parts


def usual_line_height(heights: Sequence[float]) -> float:
    """The median of the line heights given, 12 pt when there are none."""
    return median(heights) if heights else 12.0
