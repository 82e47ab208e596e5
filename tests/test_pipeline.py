"""The pipeline with a scripted engine: batching across documents, order, errors, recovery."""

from __future__ import annotations

import pytest

import loaders
from dsocr_connectors.document import PageStatus
from dsocr_connectors.pipeline import NEEDS_MODEL, Converter, Job
from dsocr_connectors.pipeline.engine_choice import EngineUnavailable
from loaders.page import LoadedPage, LoaderError
from tests.scripted_engine import CLEAN, TABLE_PAGE, TRUNCATED, ScriptedEngine, make_page


@pytest.fixture
def library(monkeypatch):
    """Sources by name -> their loaded pages (or an exception to raise after them)."""
    books: dict[str, list] = {}

    def iter_pages(source, *, dpi=144, pages=None, password=None, max_pixels=None, name=None):
        for item in books[str(source)]:
            if isinstance(item, Exception):
                raise item
            if pages is None or item.number in pages:
                yield item

    monkeypatch.setattr(loaders, "iter_pages", iter_pages, raising=False)
    return books


def add_doc(books, name, num_pages, **page_options):
    books[name] = [make_page(name, n, total=num_pages, **page_options)
                   for n in range(1, num_pages + 1)]


def test_pages_of_many_documents_share_batches_and_keep_their_order(library):
    for name, count in [("a.pdf", 3), ("b.pdf", 2), ("c.pdf", 4)]:
        add_doc(library, name, count)
    engine = ScriptedEngine()
    docs = list(Converter(engine=engine, batch_size=4).iter_documents(["a.pdf", "b.pdf", "c.pdf"]))
    assert [d.source for d in docs] == ["a.pdf", "b.pdf", "c.pdf"]
    assert [[p.number for p in d.pages] for d in docs] == [[1, 2, 3], [1, 2], [1, 2, 3, 4]]
    assert all(len(batch) <= 4 for batch in engine.batches)
    assert sum(len(b) for b in engine.batches) == 9
    mixed = [b for b in engine.batches if len({pid.split("#")[0] for pid, _ in b}) > 1]
    assert mixed, engine.batches
    page = docs[0].pages[0]
    assert page.status == PageStatus.OK and page.engine == "scripted" and page.mode == "gundam"
    assert page.raw_output == CLEAN and page.blocks and page.blocks[0].label == "title"
    assert page.compression_ratio == round(page.num_output_tokens / 100, 4)
    assert page.image_width == 64 and page.width_pt == 612


def test_a_failing_page_stays_on_its_page(library):
    add_doc(library, "a.pdf", 3)
    engine = ScriptedEngine({"a.pdf#2": [("decoder blew up", "error")]})
    doc = Converter(engine=engine, batch_size=8).convert("a.pdf")
    assert [p.status for p in doc.pages] == [PageStatus.OK, PageStatus.FAILED, PageStatus.OK]
    bad = doc.pages[1]
    assert bad.reason == "engine error: decoder blew up"
    assert [e.stage for e in bad.errors] == ["engine"]
    assert [s.action for s in bad.recovery] == ["give_up"]  # errors are not rerun
    assert engine.attempts["a.pdf#2"] == 1


def test_a_raising_engine_call_fails_only_its_batch(library):
    add_doc(library, "a.pdf", 4)
    engine = ScriptedEngine(fail_calls=1)
    doc = Converter(engine=engine, batch_size=2).convert("a.pdf")
    assert [p.status for p in doc.pages] == ["failed", "failed", "ok", "ok"]
    assert "CUDA out of memory" in doc.pages[0].reason


def test_a_loop_is_rerun_in_another_mode_and_recovered(library):
    add_doc(library, "a.pdf", 2)
    engine = ScriptedEngine({"a.pdf#1": [(TRUNCATED, "repetition"), (TABLE_PAGE, "eos")]})
    doc = Converter(engine=engine, mode="gundam").convert("a.pdf")
    page = doc.pages[0]
    assert page.status == PageStatus.RECOVERED and page.reason == "repetition loop"
    assert page.mode == "base" and page.raw_output == TABLE_PAGE
    (step,) = page.recovery
    assert (step.action, step.mode, step.finish_reason) == ("rerun", "base", "eos")
    assert ("a.pdf#1", "base") in engine.batches[-1]


def test_configured_rerun_mode_wins(library):
    add_doc(library, "a.pdf", 1)
    engine = ScriptedEngine({"a.pdf#1": [(TRUNCATED, "length"), (CLEAN, "eos")]})
    doc = Converter(engine=engine, mode="base", rerun_mode="tiny").convert("a.pdf")
    assert doc.pages[0].recovery[0].mode == "tiny" and doc.pages[0].status == "recovered"


def test_twice_truncated_page_falls_back_to_the_text_layer(library):
    add_doc(library, "a.pdf", 1, text="Born digital words.", usable=False)
    engine = ScriptedEngine({"a.pdf#1": [(TRUNCATED, "length")]})
    page = Converter(engine=engine).convert("a.pdf").pages[0]
    assert page.status == PageStatus.FALLBACK and page.engine == "text-layer"
    assert [s.action for s in page.recovery] == ["rerun", "text_layer"]
    assert page.blocks[0].content == "Born digital words."
    assert page.raw_output == TRUNCATED and page.finish_reason == "length"  # kept for the record


def test_twice_looping_scan_fails_with_its_partial_content(library):
    add_doc(library, "scan.pdf", 1)
    engine = ScriptedEngine({"scan.pdf#1": [(TRUNCATED, "length"), (CLEAN[:30], "length")]})
    page = Converter(engine=engine).convert("scan.pdf").pages[0]
    assert page.status == PageStatus.FAILED
    assert [s.action for s in page.recovery] == ["rerun", "give_up"]
    assert page.reason.startswith("hit the token limit; rerun in base")
    assert page.raw_output == TRUNCATED and len(page.blocks) >= 2  # the fuller attempt is kept


def test_loader_errors_become_failed_pages(library):
    broken = LoadedPage(source="a.pdf", number=2, error=LoaderError("a.pdf", "bad xref", 2))
    library["a.pdf"] = [make_page("a.pdf", 1), broken, make_page("a.pdf", 3)]
    library["gone.pdf"] = [LoaderError("gone.pdf", "file not found")]
    library["cut.pdf"] = [make_page("cut.pdf", 1), OSError("disk read error")]
    docs = list(Converter(engine=ScriptedEngine()).iter_documents(["a.pdf", "gone.pdf", "cut.pdf"]))
    assert [p.status for p in docs[0].pages] == ["ok", "failed", "ok"]
    assert docs[0].pages[1].errors[0].stage == "load"
    assert "a.pdf, page 2: bad xref" in docs[0].pages[1].reason
    assert [(p.number, p.status) for p in docs[1].pages] == [(1, "failed")]
    assert "gone.pdf: file not found" in docs[1].pages[0].reason
    assert [(p.number, p.status) for p in docs[2].pages] == [(1, "ok"), (2, "failed")]


@pytest.mark.parametrize(
    "ocr, engines, statuses",
    [
        ("auto", ["text-layer", "scripted"], ["ok", "ok"]),
        ("always", ["scripted", "scripted"], ["ok", "ok"]),
        ("never", ["text-layer", None], ["ok", "failed"]),
    ],
)
def test_ocr_routing_with_a_model(library, ocr, engines, statuses):
    library["mixed.pdf"] = [make_page("mixed.pdf", 1, text="Digital text page.", usable=True),
                            make_page("mixed.pdf", 2)]
    engine = ScriptedEngine()
    doc = Converter(engine=engine, ocr=ocr).convert("mixed.pdf")
    assert [p.engine for p in doc.pages] == engines
    assert [p.status for p in doc.pages] == statuses
    read_by_model = [pid for b in engine.batches for pid, _ in b]
    assert read_by_model == [f"mixed.pdf#{i + 1}" for i, e in enumerate(engines) if e == "scripted"]


def test_without_a_model_pages_that_need_one_say_so(library):
    library["mixed.pdf"] = [make_page("mixed.pdf", 1, text="Digital text page.", usable=True),
                            make_page("mixed.pdf", 2),
                            make_page("mixed.pdf", 3, text="x", usable=False)]
    doc = Converter().convert("mixed.pdf")
    assert [p.status for p in doc.pages] == ["ok", "failed", "failed"]
    assert doc.pages[1].reason == f"{NEEDS_MODEL}: no text layer"
    assert doc.pages[2].reason == NEEDS_MODEL
    assert doc.pages[2].blocks[0].content == "x"  # the little text there is, as partial content
    with pytest.raises(ValueError, match="needs a model"):
        Converter(ocr="always")


def test_text_layer_engine_by_name_reads_any_text(library):
    library["a.pdf"] = [make_page("a.pdf", 1, text="short", usable=False), make_page("a.pdf", 2)]
    doc = Converter(engine="text-layer").convert("a.pdf")
    assert [p.status for p in doc.pages] == ["ok", "failed"]


def test_plugin_engine_by_module_attr(library):
    add_doc(library, "a.pdf", 1)
    converter = Converter(engine="tests.scripted_engine:ScriptedEngine")
    assert converter.engine_name == "scripted"
    assert converter.engine.options == {"max_batch_size": 8}
    assert converter.convert("a.pdf").pages[0].status == "ok"
    with pytest.raises(EngineUnavailable, match="nowhere"):
        Converter(engine="tests.nowhere:Engine")


def test_few_documents_in_flight_still_finish(library):
    names = [f"d{i}.pdf" for i in range(7)]
    for name in names:
        add_doc(library, name, 2)
    engine = ScriptedEngine({"d3.pdf#2": [(TRUNCATED, "repetition"), (CLEAN, "eos")]})
    converter = Converter(engine=engine, batch_size=16, max_documents=2)
    docs = list(converter.iter_documents(names))
    assert [d.source for d in docs] == names
    assert all(len(b) <= 4 for b in engine.batches)  # never more than 2 documents' pages
    assert docs[3].pages[1].status == "recovered"


def test_iter_pages_streams_in_order_and_jobs_pick_pages(library):
    add_doc(library, "a.pdf", 5)
    converter = Converter(engine=ScriptedEngine(), batch_size=2)
    assert [p.number for p in converter.iter_pages("a.pdf")] == [1, 2, 3, 4, 5]
    (doc,) = converter.iter_documents([Job("a.pdf", name="renamed", pages=[2, 4])])
    assert doc.source == "renamed" and [p.number for p in doc.pages] == [2, 4]


def test_progress_bar_counts_pages_per_second_and_statuses(capsys):
    from dsocr_connectors.pipeline.progress import Progress

    with Progress(enabled=True) as progress:
        progress.add_total(3)
        for status in ["ok", "ok", "failed"]:
            progress.update(status)
    shown = capsys.readouterr().err
    assert "3/3" in shown and "page/s" in shown and "failed=1, ok=2" in shown
    quiet = Progress(enabled=False)
    quiet.update("ok")
    assert quiet.num_pages == 1 and capsys.readouterr().err == ""


def test_ocr_never_without_a_model_reads_any_text(library):
    library["a.pdf"] = [make_page("a.pdf", 1, text="short", usable=False), make_page("a.pdf", 2)]
    doc = Converter(ocr="never").convert("a.pdf")
    assert [p.status for p in doc.pages] == ["ok", "failed"]
    assert doc.pages[1].reason == "no text layer (ocr='never')"


def test_loader_warnings_reach_the_page_flags(library):
    add_doc(library, "a.pdf", 2)
    library["a.pdf"][1].warnings.append("file was repaired by mupdf")
    doc = Converter(engine=ScriptedEngine()).convert("a.pdf")
    assert not any(flag.startswith("loader:") for flag in doc.pages[0].flags)
    assert "loader: file was repaired by mupdf" in doc.pages[1].flags
