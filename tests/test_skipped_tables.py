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


def test_a_later_text_layer_is_read_from_the_file_where_it_is_used(tmp_path):
    """With `text_layer="later"` a page carries only its file's name and page number (the
    model reads every page; the layer is needed when the result is checked against it):
    read, it is the layer an eager load without tables gives, with the same tables when a
    fallback asks for them. A PDF in memory has its layer read at once; a file gone by then
    gives an empty layer that says why."""
    import pickle
    import shutil

    from loaders.page import LaterTextLayer, TextLayer

    pdf = tmp_path / "mix.pdf"
    make_pdf(pdf, 4, 0)
    eager = list(loaders.iter_pages(pdf, extract_tables=False))
    later = list(loaders.iter_pages(pdf, text_layer="later"))
    layers = [p.text_layer for p in later]
    assert all(isinstance(layer, LaterTextLayer) and layer._layer is None for layer in layers)
    crossing = pickle.dumps(later[0])
    assert isinstance(pickle.loads(crossing).text_layer, LaterTextLayer)
    assert len(pickle.dumps(layers[0])) < 300  # a name and a number, not the layer
    assert [layer.is_usable for layer in layers] == [p.text_layer.is_usable for p in eager]
    assert layers == [p.text_layer for p in eager]  # spans, words, fonts of the document...
    assert isinstance(pickle.loads(pickle.dumps(layers[0])), TextLayer)  # read: crosses as is
    for page in [*later, *eager]:
        loaders.read_skipped_tables(page)
    assert any(p.text_layer.tables for p in eager)
    assert [p.text_layer.tables for p in later] == [p.text_layer.tables for p in eager]

    (in_memory,) = loaders.iter_pages(pdf.read_bytes(), pages=[1], text_layer="later")
    assert isinstance(in_memory.text_layer, TextLayer)
    moved = tmp_path / "moved.pdf"
    shutil.copy(pdf, moved)
    (orphan,) = loaders.iter_pages(moved, pages=[2], text_layer="later")
    moved.unlink()
    assert not orphan.text_layer.is_usable and not orphan.text_layer.spans
    assert "text layer not read" in orphan.text_layer.unusable_reason


def test_pages_checked_against_a_later_layer_equal_pages_checked_against_an_eager_one(tmp_path):
    """The same model output, checked against the text layer read later (a PDF file) and
    read at load (the same PDF as bytes): the same pages, reconciliation included."""
    from dsocr_connectors.pipeline import Job
    from tests.test_loader_processes import KeyedEngine

    pdf = tmp_path / "mix.pdf"
    make_pdf(pdf, 4, 0)

    def convert(source):
        with Converter(engine=KeyedEngine(), ocr="always", loader_processes=0,
                       finish_processes=0) as converter:
            (doc,) = converter.iter_documents([Job(source, name="mix.pdf")])
        return [p.model_copy(update={"timings": {}}).model_dump() for p in doc.pages]

    from_file = convert(pdf)
    assert any(p["text_check"] for p in from_file), "the pages were checked"
    from loaders import pdf as pdf_loader

    assert not pdf_loader._text_docs, "a PDF stays open after the converter closed"
    assert from_file == convert(pdf.read_bytes())
