"""PDF pages rendered in loading processes: the same pages as in a thread, in order, and none
lost when a process dies."""

from __future__ import annotations

import os

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
        list(pool.iter_pages(pdf, pages=[1, 2, 3, 4, 5], **options))
        assert pool.wait_started(timeout=30)  # the processes render from here on
        pages = pool.iter_pages(pdf, pages=None, **options)
        first = next(pages)
        for worker in pool._workers:  # every process dies while requests are in flight
            worker.process.kill()
        rendered = [first, *pages]  # the dead processes' pages load in this thread
        expected = list(loaders.iter_pages(pdf, dpi=72))
        assert [p.number for p in rendered] == list(range(1, 12))
        assert [p.load_image().tobytes() for p in rendered] == [p.image.tobytes() for p in expected]
        assert [p.text_layer.text for p in rendered] == [p.text_layer.text for p in expected]

        picked = list(pool.iter_pages(pdf, pages=[2, 9, 30], **options))  # new processes
        assert [(p.number, p.error is None) for p in picked] == [(2, True), (9, True), (30, False)]
        assert "no such page" in str(picked[2].error)
        (bad,) = pool.iter_pages(broken, pages=None, **options)
        assert "not a readable PDF" in str(bad.error)
    finally:
        pool.close()


def test_the_first_pages_do_not_wait_for_the_processes_to_start(tmp_path, monkeypatch):
    """A cold pool renders in the calling thread every request no process has taken while
    its processes start (~1 s each); once they are up, the processes render; the pages are
    the same and in order either way."""
    import time

    from dsocr_connectors.pipeline import loader_processes

    started = loader_processes._Worker.__init__

    def slow_start(self):
        time.sleep(2.0)
        started(self)

    monkeypatch.setattr(loader_processes._Worker, "__init__", slow_start)
    pdf = make_pdf(tmp_path / "report.pdf", 9)
    pool = LoaderProcesses(2)
    try:
        options = {"pages": None, "dpi": 72, "password": None, "name": None}
        t0 = time.perf_counter()
        pages = pool.iter_pages(pdf, **options)
        first = next(pages)
        assert time.perf_counter() - t0 < 1.5, "the first page waited for a process"
        cold = [first, *pages]
        assert time.perf_counter() - t0 < 1.9, "a page waited for a process"
        assert all(p.pixel_file is None for p in cold)  # all rendered here
        assert pool.wait_started(timeout=30) and len(pool._workers) == 2
        warm = list(pool.iter_pages(pdf, **options))
        assert all(p.pixel_file is not None for p in warm)  # all from the processes
        expected = list(loaders.iter_pages(pdf, dpi=72))
        for rendered in (cold, warm):
            assert [p.number for p in rendered] == list(range(1, 10))
            assert [p.load_image().tobytes() for p in rendered] == [p.image.tobytes() for p in expected]
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


class KeyedEngine:
    """Answers by page index (the request key's second part): page 0 a real output with a
    table and a figure, page 1 cut off the first time (so it is rerun), the rest short;
    figure re-reads a chart's data. Every future is complete when returned."""

    name = "keyed"
    concurrency = 8
    supported_modes = ("tiny", "small", "base", "large", "gundam")

    def __init__(self, kill=None):
        self.attempts: dict[int, int] = {}
        self.kill = kill  # called once, at the third request

    def submit(self, request, *, on_token=None):
        from concurrent.futures import Future

        from core_model.engines.interface import GROUNDING_MARKDOWN_PROMPT, PageResult
        from tests.scripted_engine import CLEAN, TABLE_PAGE, TRUNCATED

        index = request.key[1]
        attempt = self.attempts[index] = self.attempts.get(index, 0) + 1
        if self.kill is not None and sum(self.attempts.values()) == 3:
            self.kill()
        if request.prompt != GROUNDING_MARKDOWN_PROMPT:
            text, reason = "Year | Sales\n2020 | 10\n2021 | 12", "eos"
        elif index == 0:
            text, reason = TABLE_PAGE, "eos"
        elif index == 1 and attempt == 1:
            text, reason = TRUNCATED, "length"
        else:
            text, reason = CLEAN, "eos"
        future = Future()
        future.set_result(PageResult(text=text, finish_reason=reason, key=request.key,
                                     num_output_tokens=len(text)))
        return future

    def generate(self, requests, *, on_token=None):
        return [self.submit(r).result() for r in requests]


def test_pages_finished_in_processes_equal_pages_finished_here(tmp_path):
    """Parsing, reruns, region re-reads and the text-layer check give the same pages in
    worker processes as on the consuming thread, also when the workers die mid-run."""
    pdf = make_pdf(tmp_path / "report.pdf", 6)

    def convert(processes, kill=False):
        with Converter(engine=KeyedEngine(), ocr="always", finish_processes=processes,
                       loader_processes=0, reparse="all") as converter:
            if kill:
                def kill_workers():
                    for worker in converter._finish_pool._workers:
                        worker.process.kill()
                converter.engine.kill = kill_workers
            (doc,) = converter.iter_documents([pdf])
            used = converter._finish_pool is not None and converter._finish_pool._started > 0
            return [p.model_copy(update={"timings": {}}).model_dump() for p in doc.pages], used

    here, used_here = convert(0)
    there, used_there = convert(2)
    assert not used_here and used_there
    assert there == here
    assert here[1]["recovery"], "page 2 was rerun"
    assert any(b.get("provenance") for b in here[0]["blocks"]), "page 1 had a region re-read"
    assert convert(2, kill=True)[0] == here


def test_no_page_image_is_sent_to_the_finishing_processes(tmp_path, monkeypatch):
    """A page's pixels (~6 MB pickled on the engine's process, beside its thread) stay here:
    the workers get the image size, and the figure crops are cut here; the pages are the
    same as finished here (region re-reads included)."""
    from dsocr_connectors.pipeline import loader_processes as lp
    from loaders.page import LoadedPage

    pdf = make_pdf(tmp_path / "report.pdf", 3)
    sent = []
    call = lp.LoaderProcesses.call

    def spy(self, function, *args):
        sent.extend(a for a in args if isinstance(a, LoadedPage))
        return call(self, function, *args)

    monkeypatch.setattr(lp.LoaderProcesses, "call", spy)

    def convert(processes):
        with Converter(engine=KeyedEngine(), ocr="always", finish_processes=processes,
                       loader_processes=0, reparse="all") as converter:
            (doc,) = converter.iter_documents([pdf])
        return [p.model_copy(update={"timings": {}}).model_dump() for p in doc.pages]

    there = convert(2)
    assert sent and all(p.image is None and p.image_size is not None for p in sent)
    assert any(b.get("provenance") for b in there[0]["blocks"]), "page 1 had a region re-read"
    assert there == convert(0)


def test_pixels_stay_in_files_until_the_page_is_final(tmp_path):
    """The workers send each page's pixels through a file, not the pipe, and this process
    does not read them: the page has its pixel file and no image; reading it gives the same
    image (mode, size, dpi) as a thread renders; `drop_pixels` deletes it; the folder goes
    with close()."""
    from loaders.page import PixelFile

    pdf = make_pdf(tmp_path / "report.pdf", 6)
    pool = LoaderProcesses(2)
    options = {"dpi": 72, "password": None, "name": None}
    try:
        for page in pool.iter_pages(pdf, pages=[1, 2, 3, 4, 5], **options):
            page.drop_pixels()
        assert pool.wait_started(timeout=30)  # the processes render from here on
        folder = pool._image_dir
        assert folder is not None and not os.listdir(folder)
        rendered = list(pool.iter_pages(pdf, pages=None, **options))
        assert len(os.listdir(folder)) == 6
        assert all(p.image is None and p.has_pixels for p in rendered)
        read = [p.load_image() for p in rendered]
        expected = list(loaders.iter_pages(pdf, dpi=72))
        assert [(i.mode, i.size, i.info.get("dpi")) for i in read] == \
            [(p.image.mode, p.image.size, p.image.info.get("dpi")) for p in expected]
        assert [i.tobytes() for i in read] == [p.image.tobytes() for p in expected]
        assert [p.pixel_size for p in rendered] == [p.image.size for p in expected]
        rendered[0].drop_pixels()
        assert len(os.listdir(folder)) == 5 and not rendered[0].has_pixels
        assert rendered[0].pixel_size is None and rendered[1].without_pixels().has_pixels
    finally:
        pool.close()
    assert not os.path.exists(folder)
    # Where no file can be written, the page keeps its image (it crosses the pipe).
    image = expected[0].image
    assert PixelFile.of(image, str(tmp_path / "no such folder")) is None
    written = PixelFile.of(image, str(tmp_path))
    assert written is not None and written().tobytes() == image.tobytes()
    assert PixelFile.of(image.convert("P"), str(tmp_path)) is None  # a palette would be lost


def test_a_killed_process_pixel_folder_is_removed_by_the_next_pool(tmp_path, monkeypatch):
    import subprocess
    import sys

    from core_model import worker_process
    from dsocr_connectors.pipeline import loader_processes as lp

    monkeypatch.setattr(worker_process, "memory_dir", lambda: str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    orphan = tmp_path / f"{lp.IMAGE_DIR_PREFIX}{gone.stdout.strip()}-abc"  # its process is dead
    orphan.mkdir()
    (orphan / "page.pixels").write_bytes(b"x" * 1000)
    mine = tmp_path / f"{lp.IMAGE_DIR_PREFIX}{os.getpid()}-other"  # a live process's: kept
    mine.mkdir()
    pool = LoaderProcesses(1)
    try:
        folder = pool._images()
        assert folder is not None and folder.startswith(str(tmp_path))
        assert not orphan.exists() and mine.exists()
    finally:
        pool.close()
    assert not os.path.exists(folder)


def test_text_layers_cross_packed_and_unpickle_where_read(tmp_path):
    """Pages from the loading processes carry their text layer as its pickle: the engine's
    process reads whether it is usable without building it; reading anything else unpickles
    it (equal to the layer loaded here); a change made after that crosses with it."""
    import pickle

    from loaders.page import PackedTextLayer, TextLayer

    pdf = make_pdf(tmp_path / "report.pdf", 9)
    pool = LoaderProcesses(1)
    try:  # a worker's page (a cold pool renders in this thread until they are up)
        assert pool.wait_started(timeout=30)
        page = list(pool.iter_pages(pdf, pages=None, dpi=72, password=None, name=None,
                                    extract_tables=False))[-1]
    finally:
        pool.close()
    here = list(loaders.iter_pages(pdf, dpi=72, extract_tables=False))[-1]
    layer = page.text_layer
    assert isinstance(layer, PackedTextLayer) and layer.is_usable == here.text_layer.is_usable
    assert layer._layer is None, "reading is_usable unpickled the layer"
    assert isinstance(pickle.loads(pickle.dumps(layer)), PackedTextLayer)  # crosses as bytes
    assert layer.words == here.text_layer.words and layer == here.text_layer
    layer.tables_read = False  # a write goes to the layer, and crosses with it
    crossed = pickle.loads(pickle.dumps(layer))
    assert isinstance(crossed, TextLayer) and crossed.tables_read is False


class LazyKeyedEngine(KeyedEngine):
    """`KeyedEngine` that takes lazy images, as the native engine does, and reads each."""

    lazy_images = True

    def __init__(self):
        super().__init__()
        self.given = []  # the image objects the requests brought

    def submit(self, request, *, on_token=None):
        from core_model.page_image import load_page_image

        self.given.append(request.image)
        assert load_page_image(request.image).size == request.image.size  # readable
        return super().submit(request, on_token=on_token)


def test_pixel_files_reach_the_engine_and_the_finishing_processes_and_are_deleted(tmp_path):
    """With loading processes, this process never builds a page image: an engine that takes
    lazy images gets the pixel files (others get images), the finishing processes cut the
    figure crops from the files themselves, and each file is deleted once its page is
    final. The pages are those of a run that loads and finishes here."""
    from PIL import Image

    from loaders.page import PixelFile

    pdf = make_pdf(tmp_path / "report.pdf", 9)
    warm_up = make_pdf(tmp_path / "first.pdf", 8)

    def convert(engine, processes):
        with Converter(engine=engine, ocr="always", loader_processes=processes,
                       finish_processes=processes, reparse="all") as converter:
            list(converter.iter_documents([warm_up]))
            assert converter.wait_ready(timeout=30)  # the rest from the processes
            engine.given, engine.attempts = [], {}
            (doc,) = converter.iter_documents([pdf])
            pool = converter._loader_pool
            left = os.listdir(pool._image_dir) if pool is not None else []
        return [p.model_copy(update={"timings": {}}).model_dump() for p in doc.pages], left

    lazy = LazyKeyedEngine()
    there, left = convert(lazy, 2)
    assert not left, "a page's pixel file outlived the page"
    pages = [g for g in lazy.given if isinstance(g, PixelFile)]
    assert len(pages) == 10  # every page and the rerun of page 2, none as an image here
    assert all(isinstance(g, Image.Image) for g in lazy.given if not isinstance(g, PixelFile))
    assert any(b.get("provenance") for b in there[0]["blocks"]), "page 1 had a region re-read"
    plain = KeyedEngine()
    assert convert(plain, 2)[0] == there == convert(KeyedEngine(), 0)[0]


def test_a_converter_that_loads_its_engine_starts_its_processes_when_made(monkeypatch):
    """A converter that loads its engine starts its loading and finishing processes when it
    is made (beside the engine's loading); given an engine object (a server's per-request
    converters), on first use or `wait_ready`; none without a model; a converter that cannot
    be made leaves none; close() stops them."""
    from dsocr_connectors.pipeline import engine_choice
    from dsocr_connectors.pipeline import loader_processes as lp

    made = []
    real = lp.LoaderProcesses

    def spy(n):
        made.append(real(n))
        return made[-1]

    monkeypatch.setattr(lp, "LoaderProcesses", spy)
    resolve = "dsocr_connectors.pipeline.converter.resolve_engine"
    monkeypatch.setattr(resolve, lambda *a, **k: StreamingEngine(concurrency=4))
    with Converter(engine="native", model="some/model", loader_processes=1,
                   finish_processes=1) as converter:
        assert [p._started for p in made] == [1, 1]  # started before the engine was loaded
        assert converter.wait_ready(timeout=30)
        processes = [w.process for p in made for w in p._workers]
        assert len(processes) == 2
    assert all(p.poll() is not None for p in processes), "a process outlived close()"

    made.clear()
    with Converter(engine=StreamingEngine(concurrency=4), loader_processes=1,
                   finish_processes=1) as converter:
        assert [p._started for p in made] == [0, 0]  # an engine object: on first use
        assert converter.wait_ready(timeout=30) and [len(p._workers) for p in made] == [1, 1]
    with Converter() as converter:  # no model: no pages to render ahead
        assert converter._loader_pool is None and converter._finish_pool is None

    def no_engine(*args, **kwargs):
        raise engine_choice.EngineUnavailable("no such engine here")

    made.clear()
    monkeypatch.setattr(resolve, no_engine)
    with pytest.raises(engine_choice.EngineUnavailable):
        Converter(engine="vllm", loader_processes=1, finish_processes=1)
    assert len(made) == 2 and all(p._closed for p in made)
