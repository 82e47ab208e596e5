"""The RAG examples run end to end on the shipped born-digital PDF.

The pages are read from the PDF text layer by the real Converter; the text layer has no
figure blocks, so the stand-in converter adds the one a model reports for the bar chart on
page 2 (its box on the 0..999 grid), and the connectors crop it from the real page image.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

from dsocr_connectors.document import Block, BlockType, Box, Figure

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHART_BOX = Box(x1=107, y1=340, x2=640, y2=590)


@pytest.fixture
def with_chart_figure(monkeypatch):
    from dsocr_connectors.pipeline import Converter as RealConverter

    made = []

    class Converter:
        def __init__(self, **options):
            made.append(options)
            self.real = RealConverter(**options)

        def convert(self, source, *, name=None):
            doc = self.real.convert(source, name=name)
            page = doc.pages[1]
            page.blocks.append(Block(index=len(page.blocks), type=BlockType.FIGURE,
                                     label="image", boxes=[CHART_BOX],
                                     figure=Figure(caption="Figure 1: Nitrate at sites R-27 "
                                                           "to R-30")))
            return doc

    monkeypatch.setitem(sys.modules, "dsocr_connectors.pipeline",
                        types.SimpleNamespace(Converter=Converter))
    return made


@pytest.mark.parametrize("name", ["rag_llamaindex.py", "langchain_split.py"])
def test_example_prints_figures_merged_table_and_cited_chunks(name, with_chart_figure, capsys):
    pytest.importorskip("llama_index.core" if "llama" in name else "langchain_core")
    main = runpy.run_path(str(EXAMPLES / name))["main"]
    main([str(EXAMPLES / "born_digital.pdf"), "--question", "nitrate R-29 over"])
    out = capsys.readouterr().out
    assert with_chart_figure == [{}]  # no model configured: the default (text layer) Converter
    assert "1 image nodes (figures)" in out or "; 1 figures" in out
    # the chart crop: 533 x 250 grid units of a 1190 x 1684 px page image at 144 dpi
    assert "figure p.2 box [107, 340, 640, 590]: 635x422 px" in out
    assert "table across pages [1, 2]" in out
    hits = out.split("\n[")[1:]
    assert any("R-29 | 10 | 13.15 | over" in hit for hit in hits)
