"""Golden Markdown of every real raw output, so any change in parsing shows up as a diff.

Regenerate after an intended change with `DSOCR_REGENERATE_GOLDEN=1 pytest
tests/test_parser_golden.py`, and review the diff; test_parser.py holds the targeted
assertions that say what a failure means.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsocr_connectors.parsing import parse_page

DATA = Path(__file__).parent / "data"
FILES = sorted((DATA / "raw_outputs").glob("*.txt"))
GOLDEN = DATA / "golden_markdown"
REGENERATE = os.environ.get("DSOCR_REGENERATE_GOLDEN") == "1"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:3])
def test_markdown_matches_golden(path: Path) -> None:
    page = parse_page(path.read_text(encoding="utf-8"))
    text = page.to_markdown(tables="html") + "\n"
    flags = "flags: " + " ".join(page.flags) + "\n\n"
    golden = GOLDEN / f"{path.stem}.md"
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(flags + text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == flags + text
