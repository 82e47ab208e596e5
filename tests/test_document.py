"""The document model: lossless JSON round trip, schema, exact box conversions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsocr_connectors.document import Box, Document, json_schema
from dsocr_connectors.parsing import parse_page

DATA = Path(__file__).parent / "data" / "raw_outputs"


@pytest.mark.parametrize("prefix", ["002", "014", "028", "043", "061"])
def test_json_round_trip_is_lossless(prefix: str) -> None:
    (path,) = DATA.glob(f"{prefix}_*.txt")
    page = parse_page(path.read_text(encoding="utf-8"), image_size=(1024, 1448))
    doc = Document(source=path.name, pages=[page], metadata={"k": [1, "x"]})
    again = Document.from_json(doc.to_json())
    assert again == doc
    assert again.to_json() == doc.to_json()


def test_schema_describes_the_model() -> None:
    schema = json.loads(json_schema())
    assert schema["title"] == "Document"
    assert {"Page", "Block", "Box", "Table", "TableCell"} <= set(schema["$defs"])
    assert "flags" in schema["$defs"]["Page"]["properties"]


def test_box_conversions_are_exact() -> None:
    box = Box(x1=0, y1=333, x2=999, y2=666)
    assert box.normalized() == (0.0, 333 / 999, 1.0, 666 / 999)
    assert box.to_pixels(999, 1998) == (0.0, 666.0, 999.0, 1332.0)
    assert box.to_points(612.0, 792.0) == box.to_pixels(612.0, 792.0)
    assert box.area == 999 * 333
    assert Box(x1=5, y1=5, x2=5, y2=9).area == 0
