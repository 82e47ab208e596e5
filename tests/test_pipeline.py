"""The pipeline with scripted engines: streaming across documents, order, the cap, errors,
recovery."""

from __future__ import annotations

import threading

import pytest

import loaders
from dsocr_connectors.document import PageStatus
from dsocr_connectors.pipeline import NEEDS_MODEL, Converter, Job
from dsocr_connectors.pipeline.engine_choice import EngineUnavailable
from loaders.page import LoadedPage, LoaderError
from tests.scripted_engine import (
    CLEAN,
    TABLE_PAGE,
    TRUNCATED,
    ScriptedEngine,
    StreamingEngine,
    make_page,
)


@pytest.fixture
def library(monkeypatch):
    """Sources by name -> their loaded pages (or an exception to raise after them)."""
    books: dict[str, list] = {}

    def iter_pages(source, *, dpi=144, pages=None, password=None, max_pixels=None, name=None,
                   extract_tables=True, text_layer=True):
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


def test_pages_of_many_documents_share_the_engine_and_keep_their_order(library):
    for name, count in [("a.pdf", 3), ("b.pdf", 2), ("c.pdf", 4)]:
        add_doc(library, name, count)
    engine = StreamingEngine(delay=0.02, concurrency=4)
    converter = Converter(engine=engine)
    assert converter.max_in_flight == 8  # twice the engine's concurrency
    docs = list(converter.iter_documents(["a.pdf", "b.pdf", "c.pdf"]))
    assert [d.source for d in docs] == ["a.pdf", "b.pdf", "c.pdf"]
    assert [[p.number for p in d.pages] for d in docs] == [[1, 2, 3], [1, 2], [1, 2, 3, 4]]
    assert len(engine.submitted) == 9
    assert max(len(held) for held in engine.docs_at_submit) > 1, engine.docs_at_submit
    page = docs[0].pages[0]
    assert page.status == PageStatus.OK and page.engine == "streaming" and page.mode == "gundam"
    assert page.raw_output == CLEAN and page.blocks and page.blocks[0].label == "title"
    assert page.compression_ratio == round(page.num_output_tokens / 100, 4)
    assert page.image_width == 64 and page.width_pt == 612
    assert page.timings["engine_wall"] >= 0.02


def test_no_batch_barrier_a_slow_page_holds_up_only_its_own_document(library):
    names = ["slow.pdf"] + [f"d{i}.pdf" for i in range(4)]

    def fresh_library():  # a converted page loses its image, so each run gets new pages
        add_doc(library, "slow.pdf", 2)
        for name in names[1:]:
            add_doc(library, name, 3)

    engine = StreamingEngine(delay=0.005, delays={"slow.pdf#1": 0.5}, concurrency=2)
    converter = Converter(engine=engine)

    fresh_library()
    done = [job.source for job, _ in converter.iter_done(names)]  # in completion order
    assert done == names[1:] + ["slow.pdf"]
    assert engine.finished[-1] == "slow.pdf#1"  # every other page went by while it ran

    fresh_library()
    engine.finished.clear()
    docs = list(converter.iter_documents(names))  # input order, still no barrier
    assert [d.source for d in docs] == names
    assert engine.finished[-1] == "slow.pdf#1" and len(engine.finished) == 14

    fresh_library()
    engine.finished.clear()
    engine.delays = {"d0.pdf#1": 0.3}
    assert [p.number for p in converter.iter_pages("d0.pdf")] == [1, 2, 3]
    assert engine.finished == ["d0.pdf#2", "d0.pdf#3", "d0.pdf#1"]


@pytest.mark.parametrize("cap", [1, 3, 5])
def test_pages_in_flight_never_exceed_the_cap(library, cap):
    names = [f"d{i}.pdf" for i in range(4)]
    for name in names:
        add_doc(library, name, 4)
    engine = StreamingEngine(delay=0.002, concurrency=8)
    seen = []
    real_open = Converter._open_pages

    def counting_open(self, job):
        for loaded in real_open(self, job):
            seen.append(loaded)
            yield loaded

    converter = Converter(engine=engine, max_in_flight=cap)
    converter._open_pages = counting_open.__get__(converter)
    held = []
    for doc in converter.iter_documents(names):
        held.append(sum(1 for loaded in seen if loaded.image is not None))
        assert all(p.status == "ok" for p in doc.pages)
    assert engine.max_in_flight <= cap and len(engine.submitted) == 16
    # rendered pages not yet final: the cap, plus the one the loader holds before its permit
    assert max(held) <= cap + 1, held


def test_reruns_and_region_reads_flow_through_the_same_stream(monkeypatch):
    from tests.test_deep_pipeline import CHART_OUTPUT, PAGE_OUTPUT, chart_page

    def pages(source, **options):  # pages 1 and 2 have a bar chart where PAGE_OUTPUT says
        for n in range(1, 7):
            page = chart_page(n)
            page.image.info["page_id"] = f"r.pdf#{n}"
            yield page

    class TwoPass(StreamingEngine):
        def _one(self, request):
            result = super()._one(request)
            if "Parse the figure" in request.prompt:
                result.text = CHART_OUTPUT
            elif result.text == CLEAN:
                result.text = PAGE_OUTPUT
            return result

    monkeypatch.setattr(loaders, "iter_pages", pages, raising=False)
    engine = TwoPass({"r.pdf#3": [(PAGE_OUTPUT, "repetition"), (PAGE_OUTPUT, "eos")]},
                     delay=0.01, concurrency=3)
    doc = Converter(engine=engine, mode="base", max_in_flight=4).convert("r.pdf")
    assert [p.status.value for p in doc.pages] == ["ok", "ok", "recovered", "ok", "ok", "ok"]
    requests = [(pid.startswith("r.pdf"), mode, prompt) for pid, mode, prompt in engine.submitted]
    regions = [i for i, (_, _, prompt) in enumerate(requests) if "Parse the figure" in prompt]
    assert len(regions) == 2  # the two charts; blank pages have none
    assert [m for pid, m, _ in engine.submitted if pid == "r.pdf#3"] == ["base", "large"]
    assert any(is_page for is_page, _, _ in requests[regions[0] + 1:])  # pages went on after
    assert engine.max_in_flight <= 4
    assert doc.pages[0].blocks[1].chart.categories == ["Q1", "Q2"]


def test_a_failing_page_stays_on_its_page(library):
    add_doc(library, "a.pdf", 3)
    engine = ScriptedEngine({"a.pdf#2": [("decoder blew up", "error")]})
    doc = Converter(engine=engine).convert("a.pdf")
    assert [p.status for p in doc.pages] == [PageStatus.OK, PageStatus.FAILED, PageStatus.OK]
    bad = doc.pages[1]
    assert bad.reason == "engine error: decoder blew up"
    assert [e.stage for e in bad.errors] == ["engine"]
    assert [s.action for s in bad.recovery] == ["give_up"]  # errors are not rerun
    assert engine.attempts["a.pdf#2"] == 1


def test_a_raising_batch_engine_call_fails_only_its_pages(library):
    add_doc(library, "a.pdf", 4)
    engine = ScriptedEngine(fail_calls=1)  # batch-only: driven through as_streaming
    doc = Converter(engine=engine, max_in_flight=2).convert("a.pdf")
    failed = {pid for pid, _ in engine.batches[0]}
    assert [p.status for p in doc.pages] == [
        "failed" if f"a.pdf#{n}" in failed else "ok" for n in range(1, 5)]
    assert "CUDA out of memory" in doc.pages[0].reason
    assert all(len(batch) <= 2 for batch in engine.batches)


def test_a_closed_engine_fails_its_pages_with_the_reason(library):
    add_doc(library, "a.pdf", 3)
    engine = StreamingEngine(delays={"a.pdf#1": 0.5}, concurrency=1)
    converter = Converter(engine=engine, max_in_flight=2)
    threading.Timer(0.2, engine.close).start()  # while page 1 is read and page 2 waits
    statuses = [(p.status.value, p.reason) for p in converter.iter_pages("a.pdf")]
    assert [s for s, _ in statuses] == ["failed", "failed", "failed"]
    assert all("EngineClosed" in reason and "is closed" in reason for _, reason in statuses)


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


def test_reruns_use_only_modes_the_engine_reads(library):
    """A looping page is rerun in a mode the engine reads (DeepSeek-OCR-2 has no large); an
    engine that reads one mode only (vLLM: gundam) sends the page to the text layer at once."""
    add_doc(library, "a.pdf", 1)
    add_doc(library, "b.pdf", 1, text="Born digital words.", usable=False)
    ocr2 = ScriptedEngine({"a.pdf#1": [(TRUNCATED, "repetition"), (CLEAN, "eos")]})
    ocr2.supported_modes = ("small", "base", "gundam")
    page = Converter(engine=ocr2, mode="base").convert("a.pdf").pages[0]
    assert page.status == PageStatus.RECOVERED and page.recovery[0].mode == "gundam"
    vllm = ScriptedEngine({"b.pdf#1": [(TRUNCATED, "repetition")]})
    vllm.supported_modes = ("gundam",)
    page = Converter(engine=vllm, mode="gundam").convert("b.pdf").pages[0]
    assert page.status == PageStatus.FALLBACK
    assert [s.action for s in page.recovery] == ["text_layer"]
    assert sum(len(b) for b in vllm.batches) == 1  # no rerun was sent


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
    assert converter.engine.options == {}  # the cap on pages in flight is not the engine's
    assert converter.convert("a.pdf").pages[0].status == "ok"
    with pytest.raises(EngineUnavailable, match="nowhere"):
        Converter(engine="tests.nowhere:Engine")


def test_few_documents_in_flight_still_finish(library):
    names = [f"d{i}.pdf" for i in range(7)]
    engine = StreamingEngine({"d3.pdf#2": [(TRUNCATED, "repetition"), (CLEAN, "eos")]},
                             delay=0.002, delays={"d0.pdf#1": 0.2}, concurrency=4)
    converter = Converter(engine=engine, max_in_flight=16, max_documents=2)
    for ordered in (True, False):
        for name in names:
            add_doc(library, name, 2)
        docs = list(converter.iter_documents(names, ordered=ordered))
        assert sorted(d.source for d in docs) == names
        assert all(len(held) <= 2 for held in engine.docs_at_submit)  # never a third document
        assert next(d for d in docs if d.source == "d3.pdf").pages[1].status == "recovered"
        engine.attempts.clear()
    assert [d.source for d in docs][-1] == "d0.pdf"  # completion order: the slow one last


def test_deprecated_batch_size_is_the_cap(library):
    add_doc(library, "a.pdf", 5)
    engine = StreamingEngine(delay=0.002, concurrency=8)
    with pytest.warns(DeprecationWarning, match="max_in_flight"):
        converter = Converter(engine=engine, batch_size=2)
    assert converter.max_in_flight == 2 and converter.batch_size == 2
    assert [p.status for p in converter.convert("a.pdf").pages] == ["ok"] * 5
    assert engine.max_in_flight <= 2
    with pytest.raises(ValueError, match="max_in_flight must be at least 1"):
        Converter(engine=engine, max_in_flight=0)


def test_iter_pages_streams_in_order_and_jobs_pick_pages(library):
    add_doc(library, "a.pdf", 5)
    converter = Converter(engine=ScriptedEngine(), max_in_flight=2)
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


def test_a_document_queue_streams_documents_submitted_one_by_one(library):
    from concurrent.futures import ThreadPoolExecutor

    from dsocr_connectors.pipeline.document_queue import DocumentQueue
    from tests.scripted_engine import BrokenResultsEngine

    names = [f"d{i}.pdf" for i in range(6)]
    for name in names:
        add_doc(library, name, 2)
    engine = StreamingEngine(delay=0.01, delays={"d0.pdf#1": 0.4}, concurrency=4)
    documents = DocumentQueue(Converter(engine=engine))
    with ThreadPoolExecutor(6) as callers:  # as a Ray replica's calls arrive
        docs = list(callers.map(documents.convert, names))
    assert [d.source for d in docs] == names and all(len(d.pages) == 2 for d in docs)
    assert engine.finished[-1] == "d0.pdf#1"  # the others went by in the same run
    assert max(len(held) for held in engine.docs_at_submit) > 2
    documents.close()

    add_doc(library, "a.pdf", 1)
    broken = DocumentQueue(Converter(engine=BrokenResultsEngine()))
    with pytest.raises(AttributeError):  # a bug in the run fails its documents ...
        broken.convert("a.pdf")
    add_doc(library, "a.pdf", 1)
    with pytest.raises(AttributeError):  # ... and the next document gets a new run
        broken.submit("a.pdf").result(timeout=5)
