"""Pages the model reads are loaded without the text layer's ruled tables (finding them is
most of the cost of loading a page with tables); a page that falls back to its text layer
reads them from the file then, and gets the same tables as an eager load."""

from __future__ import annotations

from concurrent.futures import Future

import loaders
from benchmarks.mix import make_pdf
from core_model.engines.interface import PageResult
from dsocr_connectors.pipeline import Converter


def test_skipped_tables_are_read_from_the_file_when_needed(tmp_path):
    pdf = tmp_path / "mix.pdf"
    make_pdf(pdf, 4, 0)
    eager = list(loaders.iter_pages(pdf))
    lazy = list(loaders.iter_pages(pdf, extract_tables=False))
    assert any(p.text_layer.tables for p in eager), "the mix has ruled tables"
    assert all(not p.text_layer.tables and not p.text_layer.tables_read for p in lazy)
    for page in lazy:
        loaders.read_skipped_tables(page)
    assert [p.text_layer.tables for p in lazy] == [p.text_layer.tables for p in eager]
    assert [p.text_layer.figures for p in lazy] == [p.text_layer.figures for p in eager]

    (from_bytes,) = loaders.iter_pages(pdf.read_bytes(), pages=[1], extract_tables=False)
    loaders.read_skipped_tables(from_bytes)
    assert from_bytes.text_layer.tables_read and not from_bytes.text_layer.tables
    assert any("tables and figure regions" in w for w in from_bytes.warnings)


class FailingEngine:
    """Every page fails: each falls back to its text layer."""

    name = "failing"
    concurrency = 4

    def submit(self, request, *, on_token=None):
        future = Future()
        future.set_result(PageResult(text="", finish_reason="error", error="GPU on fire",
                                     key=request.key))
        return future

    def generate(self, requests, *, on_token=None):
        return [self.submit(r).result() for r in requests]


def test_a_page_falling_back_to_its_layer_keeps_its_ruled_tables(tmp_path):
    pdf = tmp_path / "mix.pdf"
    make_pdf(pdf, 4, 0)
    with Converter(engine=FailingEngine(), ocr="always", loader_processes=0,
                   finish_processes=0) as converter:
        fallen = converter.convert(pdf)
    with Converter(ocr="auto") as converter:  # no model: the text path, tables read eagerly
        text_path = converter.convert(pdf)
    assert {p.status.value for p in fallen.pages} == {"fallback"}
    tables = [[b.table.model_dump() for b in p.tables()] for p in fallen.pages]
    assert any(tables)
    assert tables == [[b.table.model_dump() for b in p.tables()] for p in text_path.pages]
