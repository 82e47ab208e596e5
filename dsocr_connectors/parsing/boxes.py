"""Coordinate payloads -> `Box` objects on the 0..999 grid, clamped and flagged.

The model writes `[[x1, y1, x2, y2]]` or several boxes `[[..], [..]]`, integers on a 0..999
grid. Broken outputs write 1000, negative or fractional values, inverted corners, groups of
the wrong length, or stop half way. This module never evaluates the text: it reads the
innermost bracket groups with a regular expression and converts the numbers itself.

Flags it returns (plain strings, see docs/parser.md): `box_clamped`, `box_inverted`,
`box_empty`, `malformed_box`, `unbalanced_box`.
"""

from __future__ import annotations

import math
import re

from dsocr_connectors.document import GRID, Box

_GROUP_RE = re.compile(r"\[([^\[\]]*)\]")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _to_grid(value: str) -> tuple[int, bool]:
    """The grid integer for one number, and whether it had to be clamped or rounded.

    Any length of digits is fine: a number too large for a float is clamped like 1000.
    """
    number = float(value)
    if math.isinf(number):
        return (GRID if number > 0 else 0), True
    clamped = min(max(round(number), 0), GRID)
    return clamped, clamped != number


def parse_box(numbers: list[str]) -> tuple[Box, list[str]]:
    """One box from four number strings; clamps into 0..999 and puts corners in order."""
    flags: list[str] = []
    values = []
    for text in numbers:
        value, changed = _to_grid(text)
        if changed:
            flags.append("box_clamped")
        values.append(value)
    x1, y1, x2, y2 = values
    if x1 > x2 or y1 > y2:
        flags.append("box_inverted")
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    box = Box(x1=x1, y1=y1, x2=x2, y2=y2)
    if box.area == 0:
        flags.append("box_empty")
    return box, sorted(set(flags))


def parse_boxes(payload: str) -> tuple[list[Box], list[str]]:
    """All boxes in a coordinate payload such as `[[10, 20, 300, 400], [5, 6, 7, 8]]`.

    Args:
        payload: the text between `<|det|>` and `<|/det|>` (possibly partial).

    Returns:
        The boxes found, in order, and the sorted flags raised while reading them. Groups
        that are not four numbers are skipped and flagged `malformed_box`; a payload whose
        brackets never close is flagged `unbalanced_box` (its complete groups are kept).
    """
    boxes: list[Box] = []
    flags: set[str] = set()
    for group in _GROUP_RE.finditer(payload):
        numbers = _NUMBER_RE.findall(group.group(1))
        leftover = _NUMBER_RE.sub("", group.group(1)).replace(",", "").strip()
        if len(numbers) != 4 or leftover:
            flags.add("malformed_box")
            continue
        box, box_flags = parse_box(numbers)
        boxes.append(box)
        flags.update(box_flags)
    if payload.count("[") != payload.count("]"):
        flags.add("unbalanced_box")
    elif not boxes and payload.strip():
        flags.add("malformed_box")
    return boxes, sorted(flags)
