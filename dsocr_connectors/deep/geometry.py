"""Geometry figures: the `{'Line': {...}, 'Circle': {...}}` output -> `Geometry`.

The released scripts `eval` this text. Here it goes through the safe literal reader; each
segment `'(x0, y0) -- (x1, y1)'`, endpoint `'A: (x, y)'` and circle centre is read on its
own, and a piece that does not read is skipped with the flag `unreadable_part` rather than
failing the figure.
"""

from __future__ import annotations

import re
from typing import Any

from dsocr_connectors.deep.literals import find_literal
from dsocr_connectors.document import Geometry, GeometrySegment

_POINT = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)")


def parse_geometry(text: str) -> Geometry | None:
    """The geometry in an output, or None when it holds no `Line` literal."""
    if "Line" not in text:
        return None
    data = find_literal(text)
    if not isinstance(data, dict) or not isinstance(data.get("Line"), dict):
        return None
    geometry = Geometry()
    line = data["Line"]
    styles = _list(line.get("line_type"))
    for i, segment in enumerate(_list(line.get("line"))):
        points = _POINT.findall(str(segment))
        if len(points) != 2:
            geometry.flags.append("unreadable_part")
            continue
        (x0, y0), (x1, y1) = ((float(a), float(b)) for a, b in points)
        style = str(styles[i]) if i < len(styles) else "--"
        geometry.segments.append(GeometrySegment(start=(x0, y0), end=(x1, y1), style=style))
    for endpoint in _list(line.get("line_endpoint")):
        label, _, rest = str(endpoint).partition(":")
        point = _POINT.search(rest)
        if point is None:
            geometry.flags.append("unreadable_part")
            continue
        geometry.points[label.strip()] = (float(point.group(1)), float(point.group(2)))
    circle = data.get("Circle") if isinstance(data.get("Circle"), dict) else {}
    for centre, radius in zip(_list(circle.get("circle_center")), _list(circle.get("radius"))):
        point = _POINT.search(str(centre))
        if point is None or not isinstance(radius, (int, float)):
            geometry.flags.append("unreadable_part")
            continue
        geometry.circles.append(((float(point.group(1)), float(point.group(2))), float(radius)))
    geometry.flags = sorted(set(geometry.flags))
    return geometry


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
