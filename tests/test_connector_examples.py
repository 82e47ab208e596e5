"""The RAG examples run end to end (a stand-in converter replaces the pipeline here)."""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest
from connector_samples import StubConverter

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def stub_pipeline(monkeypatch):
    made = []

    class Converter(StubConverter):
        def __init__(self, **options):
            super().__init__()
            made.append(options)

    monkeypatch.setitem(sys.modules, "dsocr_connectors.pipeline",
                        types.SimpleNamespace(Converter=Converter))
    return made


@pytest.mark.parametrize("name", ["rag_llamaindex.py", "langchain_split.py"])
def test_example_prints_cited_chunks(name, stub_pipeline, capsys):
    pytest.importorskip("llama_index.core" if "llama" in name else "langchain_core")
    main = runpy.run_path(str(EXAMPLES / name))["main"]
    main(["report.pdf", "--question", "Zanzibar Widgets revenue"])
    out = capsys.readouterr().out
    assert stub_pipeline == [{}]  # no model configured: the default (text layer) Converter
    first_hit = out.split("\n[")[0] if out.startswith("[") else out.split("\n[")[1]
    # the heading and caption open the table's first chunk: their boxes join the table's
    assert "p.i" in first_hit and "page 1 [100, 430, 900, 980]" in first_hit
    assert "| Region | Product | Revenue / Q1 | Revenue / Q2 |" in first_hit
