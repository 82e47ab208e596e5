"""PDF pages rendered in loading processes: the same pages as in a thread, in order, and none
lost when a process dies."""

from __future__ import annotations

import pymupdf
import pytest

import loaders
from dsocr_connectors.pipeline import Converter
from dsocr_connectors.pipeline.loader_processes import LoaderProcesses, available
from tests.scripted_engine import StreamingEngine

pytestmark = [pytest.mark.skipif(not available(), reason="POSIX only"), pytest.mark.slow]


def make_pdf(path, num_pages):
    doc = pymupdf.open()
    for n in range(num_pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 90), f"Page {n + 1} of a born-digital report", fontsize=14)
        page.draw_rect(pymupdf.Rect(72, 120, 300, 200))
    doc.save(path)
    return path


def test_pages_from_processes_match_a_thread_and_survive_a_dead_process(tmp_path):
    pdf = make_pdf(tmp_path / "report.pdf", 11)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\nnot a PDF at all")
    pool = LoaderProcesses(2)
    try:
        options = {"dpi": 72, "password": None, "name": None}
        pages = pool.iter_pages(pdf, pages=None, **options)
        first = next(pages)
        for worker in pool._workers:  # every process dies while requests are in flight
            worker.process.kill()
        rendered = [first, *pages]  # the dead processes' pages load in this thread
        expected = list(loaders.iter_pages(pdf, dpi=72))
        assert [p.number for p in rendered] == list(range(1, 12))
        assert [p.image.tobytes() for p in rendered] == [p.image.tobytes() for p in expected]
        assert [p.text_layer.text for p in rendered] == [p.text_layer.text for p in expected]

        picked = list(pool.iter_pages(pdf, pages=[2, 9, 30], **options))  # new processes
        assert [(p.number, p.error is None) for p in picked] == [(2, True), (9, True), (30, False)]
        assert "no such page" in str(picked[2].error)
        (bad,) = pool.iter_pages(broken, pages=None, **options)
        assert "not a readable PDF" in str(bad.error)
    finally:
        pool.close()


def test_converter_with_loader_processes_gives_the_same_documents(tmp_path):
    pdfs = [make_pdf(tmp_path / f"r{i}.pdf", n) for i, n in enumerate((3, 5))]

    def convert(processes):
        with Converter(engine=StreamingEngine(concurrency=4), ocr="always",
                       loader_processes=processes) as converter:
            return [[p.model_copy(update={"timings": {}}).model_dump() for p in doc.pages]
                    for doc in converter.iter_documents(pdfs)]

    assert convert(1) == convert(0)
