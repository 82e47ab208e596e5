"""The RAG examples run end to end on the shipped born-digital PDF, read by the real
Converter from its text layer (no model): the bar chart on page 2 is a figure block found in
the page's vector drawing, cropped from the real page image."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["rag_llamaindex.py", "langchain_split.py"])
def test_example_prints_figures_merged_table_and_cited_chunks(name, capsys):
    pytest.importorskip("llama_index.core" if "llama" in name else "langchain_core")
    main = runpy.run_path(str(EXAMPLES / name))["main"]
    main([str(EXAMPLES / "born_digital.pdf"), "--question", "nitrate R-29 over"])
    out = capsys.readouterr().out
    assert "1 image nodes (figures)" in out or "; 1 figures" in out
    # the chart crop: 504 x 202 grid units of a 1190 x 1684 px page image at 144 dpi
    assert "figure p.2 box [158, 363, 662, 565]: 601x340 px" in out
    assert "table across pages [1, 2]" in out
    hits = out.split("\n[")[1:]
    assert any("R-29 | 10 | 13.15 | over" in hit for hit in hits)
