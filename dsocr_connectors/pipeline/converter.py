"""`Converter`: files -> loaders -> engine batches -> parser -> `Document`.

The loop, in one thread beside the loading worker (`feed.py`):
- pages arrive from the worker already routed: a text-layer page or an error page is final,
  a page for the model joins the batch;
- the batch mixes pages of every open document and runs as one `Engine.generate` call of up
  to `batch_size` pages; a page that looped or hit the token limit comes back into the next
  batch once, in its rerun mode (`recovery.py`);
- pages are put back per document in their order, and documents are emitted in input order.
A page never raises out of this: engine, parse, loader and text-layer errors become that
page's `errors` and status. Only a broken engine call is caught as a whole (every page of
that batch gets the error), and only a broken loading worker ends the run.

Routing by `ocr`: "always" (the default with a model) sends every page to the model, and a
page with a text layer is then checked against it (`dsocr_connectors.reconcile`); "auto"
reads pages with a usable text layer from it and the rest with the model; "never" reads
any text layer and fails the pages that have none. Without a model only text layers can be
read (the default is "auto"): `ocr="always"` is refused, and a page without a usable text
layer is `failed` with the reason `NEEDS_MODEL` and why the layer is not usable (and its
text-layer text, if any, as partial content).
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core_model.engines.interface import GROUNDING_MARKDOWN_PROMPT, MODES, PageRequest, PageResult
from dsocr_connectors.deep.annotate import annotate_page
from dsocr_connectors.deep.region import RegionTask, apply_region_result, plan_regions
from dsocr_connectors.deep.routing import RoutingPolicy
from dsocr_connectors.document import Document, Page, PageStatus
from dsocr_connectors.pipeline import recovery
from dsocr_connectors.pipeline.engine_choice import is_text_layer, resolve_engine
from dsocr_connectors.pipeline.feed import (
    DONE,
    STALL,
    DocEnd,
    DocStart,
    Feed,
    FeedError,
    Job,
    PageItem,
)
from dsocr_connectors.pipeline.page_builder import build_page, error_page
from dsocr_connectors.pipeline.progress import Progress
from dsocr_connectors.reconcile import check_with_text_layer
from dsocr_connectors.text_layer import has_text, page_from_text_layer
from loaders.page import LoadedPage

log = logging.getLogger(__name__)

NEEDS_MODEL = "needs a model (no model configured)"
NO_TEXT_LAYER = "no text layer (ocr='never')"
OCR_CHOICES = ("auto", "always", "never")


@dataclass
class _Work:
    """A page waiting for the engine; `first` is its failed first run when this is a rerun.

    A region work (`region` set) is the second read of one block of `page`, which waits in
    `Converter._waiting` until all its regions are back.
    """

    doc_id: int
    slot: int
    loaded: LoadedPage
    mode: str
    first: Page | None = None
    region: RegionTask | None = None
    page: Page | None = None


@dataclass
class _OpenDoc:
    name: str
    pages: dict[int, Page] = field(default_factory=dict)
    num_pages: int | None = None  # known at DocEnd
    num_arrived: int = 0
    num_emitted: int = 0
    is_total_known: bool = False  # pages were selected, so the progress total is known

    @property
    def is_complete(self) -> bool:
        return self.num_pages is not None and len(self.pages) == self.num_pages


class Converter:
    """Converts PDFs and images into `Document`s with an engine, the text layer, or both.

    Args:
        engine: an `Engine`, or a name: "native", "vllm", "openai", "text-layer", or
            "module:attr" for a custom engine (see `engine_choice.py`). None: the native
            engine if `model` is given, else no model (text layers only).
        model: the model directory (or id) for engines that load one.
        mode: resolution mode: tiny, small, base, large, gundam.
        prompt: the prompt; default the grounding Markdown prompt.
        ocr: "always", "auto" or "never" (see the module docstring); None: "always" with a
            model, "auto" without.
        dpi: PDF rendering resolution.
        batch_size: pages per engine call (pages of several documents share a call).
        device: the engine's device ("cuda", "cuda:1", "cpu"); None: the engine's choice.
        max_new_tokens: the output token limit per page; None: the engine's default.
        pages: 1-based page numbers to convert in every document; None: all.
        password: for encrypted PDFs.
        rerun_mode: the mode to rerun failed pages in; None: `recovery.RERUN_MODES`.
        max_documents: documents open at once (bounds memory on large folders).
        progress: draw a progress bar (None: when stderr is a terminal).
        reparse: the second pass over regions (`dsocr_connectors.deep`): "off", "charts"
            (figures that look like charts or chemical structures) or "all", or a
            `RoutingPolicy`. Only pages read by a model have one.

    Raises:
        ValueError: an unknown mode or `ocr` value, or `ocr="always"` without a model.
        EngineUnavailable: the engine asked for cannot be loaded.
    """

    def __init__(
        self,
        *,
        engine: Any = None,
        model: str | None = None,
        mode: str = "gundam",
        prompt: str | None = None,
        ocr: str | None = None,
        dpi: int = 144,
        batch_size: int = 8,
        device: str | None = None,
        max_new_tokens: int | None = None,
        pages: Iterable[int] | None = None,
        password: str | None = None,
        rerun_mode: str | None = None,
        max_documents: int = 4,
        progress: bool | None = False,
        reparse: str | RoutingPolicy = "charts",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if rerun_mode is not None and rerun_mode not in MODES:
            raise ValueError(f"unknown rerun mode {rerun_mode!r}; choose one of {', '.join(MODES)}")
        if ocr is not None and ocr not in OCR_CHOICES:
            raise ValueError(f"unknown ocr {ocr!r}; choose one of {', '.join(OCR_CHOICES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.engine = resolve_engine(
            engine, model=model, device=device, batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        )
        self.has_model = self.engine is not None and not is_text_layer(self.engine)
        if ocr == "always" and not self.has_model:
            raise ValueError("ocr='always' needs a model: pass model=... or engine=...")
        if ocr is None:
            ocr = "always" if self.has_model else "auto"
        self.model = model
        self.mode = mode
        self.prompt = prompt or GROUNDING_MARKDOWN_PROMPT
        self.ocr = ocr
        self.dpi = dpi
        self.batch_size = batch_size
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.pages = sorted(set(pages)) if pages is not None else None
        self.password = password
        self.rerun_mode = rerun_mode
        self.max_documents = max_documents
        self.progress = progress
        self.reparse = reparse if isinstance(reparse, RoutingPolicy) else RoutingPolicy(reparse)
        self._waiting: dict[tuple[int, int], list[Any]] = {}  # page -> [page, regions left]

    @property
    def engine_name(self) -> str | None:
        """The engine's `name` (its class name if it has none); None without an engine."""
        if self.engine is None:
            return None
        return getattr(self.engine, "name", None) or type(self.engine).__name__

    def options(self) -> dict[str, Any]:
        """The settings that shape the output (recorded with archives to detect changes)."""
        return {
            "engine": self.engine_name, "model": self.model, "mode": self.mode,
            "prompt": self.prompt, "ocr": self.ocr, "dpi": self.dpi, "pages": self.pages,
            "max_new_tokens": self.max_new_tokens, "rerun_mode": self.rerun_mode,
            "reparse": self.reparse.mode,
        }

    def convert(self, source: Any, *, name: str | None = None) -> Document:
        """Convert one PDF or image (path, bytes or binary file object) into a `Document`."""
        return next(self._documents([Job(source, name=name)]))

    def iter_documents(self, sources: Iterable[Any]) -> Iterator[Document]:
        """Convert many sources, batching their pages together; documents come in input order.

        A source is a path, bytes, a binary file object or a `Job`; a folder or a glob
        pattern stands for the files under it (`loaders.iter_sources`).
        """
        return self._documents(_jobs(sources))

    def iter_pages(self, source: Any, *, name: str | None = None) -> Iterator[Page]:
        """The pages of one source, each as soon as it and the pages before it are done."""
        for item in self._run([Job(source, name=name)]):
            if isinstance(item, Page):
                yield item

    def _documents(self, jobs: Iterable[Job]) -> Iterator[Document]:
        for item in self._run(jobs):
            if isinstance(item, Document):
                yield item

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, jobs: Iterable[Job]) -> Iterator[Page | Document]:
        feed = Feed(
            jobs, open_pages=self._open_pages, route=self._route,
            max_documents=self.max_documents, max_pages=2 * self.batch_size,
        )
        docs: dict[int, _OpenDoc] = {}
        batch: list[_Work] = []
        next_doc = 0
        progress = Progress(self.progress)
        try:
            while True:
                message = feed.get()
                if message is DONE:
                    break
                if isinstance(message, FeedError):
                    raise message.error
                if message is STALL:
                    self._drain(batch, docs, progress)
                elif isinstance(message, DocStart):
                    selected = message.job.pages if message.job.pages is not None else self.pages
                    docs[message.doc_id] = _OpenDoc(message.name, is_total_known=bool(selected))
                    progress.add_total(len(selected or []))
                elif isinstance(message, PageItem):
                    doc = docs[message.doc_id]
                    slot, doc.num_arrived = doc.num_arrived, doc.num_arrived + 1
                    if slot == 0 and not doc.is_total_known and message.loaded.total_pages:
                        progress.add_total(message.loaded.total_pages)
                    if message.page is not None:
                        doc.pages[slot] = _final(message.page, message.loaded)
                        progress.update(message.page.status.value)
                    else:
                        batch.append(_Work(message.doc_id, slot, message.loaded, self.mode))
                        if len(batch) >= self.batch_size:
                            self._run_batch(batch, docs, progress)
                elif isinstance(message, DocEnd):
                    docs[message.doc_id].num_pages = message.num_pages
                next_doc = yield from self._emit(docs, next_doc, feed)
            self._drain(batch, docs, progress)
            yield from self._emit(docs, next_doc, feed)
        finally:
            progress.close()
            feed.close()

    def _emit(
        self, docs: dict[int, _OpenDoc], next_doc: int, feed: Feed
    ) -> Iterator[Page | Document]:
        """Yield finished pages in order and whole documents in input order; the next doc id."""
        while next_doc in docs:
            doc = docs[next_doc]
            while doc.num_emitted in doc.pages:
                yield doc.pages[doc.num_emitted]
                doc.num_emitted += 1
            if not doc.is_complete:
                break
            del docs[next_doc]
            pages = [doc.pages[i] for i in range(doc.num_pages or 0)]
            yield Document(source=doc.name, pages=pages, metadata=self._metadata())
            feed.release_document()
            next_doc += 1
        return next_doc

    def _metadata(self) -> dict[str, Any]:
        return {"engine": self.engine_name, "mode": self.mode, "ocr": self.ocr}

    def _drain(self, batch: list[_Work], docs: dict[int, _OpenDoc], progress: Progress) -> None:
        while batch:
            self._run_batch(batch, docs, progress)

    def _run_batch(self, batch: list[_Work], docs: dict[int, _OpenDoc], progress: Progress) -> None:
        """Run the first `batch_size` works; reruns go back to the front of `batch`."""
        works, batch[:] = batch[: self.batch_size], batch[self.batch_size:]
        started = time.perf_counter()
        results = self._generate(works)
        elapsed = time.perf_counter() - started
        reruns: list[_Work] = []
        for work, result in zip(works, results, strict=True):
            if work.region is not None:
                self._finish_region(work, result, docs, progress)
                continue
            page = build_page(
                result, work.loaded, engine=self.engine_name or "", mode=work.mode,
                prompt=self.prompt,
            )
            page.timings.setdefault("batch", elapsed)
            if work.first is not None:
                page = recovery.after_rerun(work.first, page, work.loaded)
            elif recovery.needs_rerun(page):
                mode = recovery.rerun_mode_for(work.mode, self.rerun_mode)
                log.info("%s page %d: %s; rerun in %s", docs[work.doc_id].name,
                         work.loaded.number, page.reason, mode)
                reruns.append(_Work(work.doc_id, work.slot, work.loaded, mode, first=page))
                continue
            elif page.status == PageStatus.FAILED:
                page = recovery.fall_back_or_fail(page, work.loaded, reason=page.reason or "failed")
            regions = self._plan_regions(work, page)
            if regions:
                self._waiting[(work.doc_id, work.slot)] = [page, len(regions)]
                reruns.extend(regions)
                continue
            self._finish(work, page, docs, progress)
        batch[:0] = reruns

    def _plan_regions(self, work: _Work, page: Page) -> list[_Work]:
        """Second reads of this page's figure regions, as works for the next batches."""
        if work.loaded.image is None or page.engine != self.engine_name:
            return []  # a text-layer fallback has no model boxes to crop
        if page.status not in (PageStatus.OK, PageStatus.RECOVERED):
            return []
        tasks = plan_regions(page, work.loaded.image, self.reparse)
        return [_Work(work.doc_id, work.slot, work.loaded, task.request.mode, region=task,
                      page=page) for task in tasks]

    def _finish_region(self, work: _Work, result: PageResult, docs: dict[int, _OpenDoc],
                       progress: Progress) -> None:
        assert work.region is not None and work.page is not None
        apply_region_result(work.page, work.region, result, engine=self.engine_name)
        waiting = self._waiting[(work.doc_id, work.slot)]
        waiting[1] -= 1
        if waiting[1] == 0:
            del self._waiting[(work.doc_id, work.slot)]
            self._finish(work, work.page, docs, progress)

    def _finish(self, work: _Work, page: Page, docs: dict[int, _OpenDoc],
                progress: Progress) -> None:
        docs[work.doc_id].pages[work.slot] = _final(page, work.loaded)
        work.loaded.image = None  # the page is final: free its image
        progress.update(page.status.value)

    def _generate(self, works: list[_Work]) -> list[PageResult]:
        requests = [
            PageRequest(image=w.region.request.image, prompt=w.region.request.prompt,
                        mode=w.mode, max_new_tokens=self.max_new_tokens, key=i)
            if w.region is not None else
            PageRequest(image=w.loaded.image, prompt=self.prompt, mode=w.mode,
                        max_new_tokens=self.max_new_tokens, key=i)
            for i, w in enumerate(works)
        ]
        try:
            results = list(self.engine.generate(requests))
        except Exception as exc:  # the whole call broke: every page of it carries the error
            log.warning("engine call of %d pages failed: %s", len(works), exc)
            message = f"{type(exc).__name__}: {exc}"
            return [PageResult(text="", finish_reason="error", error=message) for _ in works]
        if len(results) != len(works):
            message = f"the engine returned {len(results)} results for {len(works)} pages"
            return [PageResult(text="", finish_reason="error", error=message) for _ in works]
        return results

    # -- the loading side (runs in the feed's worker thread) ----------------------------------

    def _open_pages(self, job: Job) -> Iterable[LoadedPage]:
        """The one place pages are loaded (`loaders.iter_pages`)."""
        import loaders

        pages = job.pages if job.pages is not None else self.pages
        loaded = loaders.iter_pages(
            job.source, dpi=self.dpi, pages=pages, password=self.password, name=job.name
        )
        return loaders.prefetch(loaded, max_in_flight=self.batch_size)  # renders ahead

    def _route(self, loaded: LoadedPage) -> Page | None:
        """A final page for text-layer reads and dead ends, None for the model."""
        layer = loaded.text_layer
        is_usable = layer is not None and layer.is_usable
        if self.has_model:
            if self.ocr == "always" or (self.ocr == "auto" and not is_usable):
                if loaded.image is None:
                    return error_page(loaded, "load", "no page image to read")
                return None
            if self.ocr == "never" and not has_text(loaded):
                return self._dead_end(loaded, NO_TEXT_LAYER)
            return page_from_text_layer(loaded)
        reads_any_text = is_text_layer(self.engine) or self.ocr == "never"
        if is_usable or (reads_any_text and has_text(loaded)):
            return page_from_text_layer(loaded)
        if self.ocr == "never":
            return self._dead_end(loaded, NO_TEXT_LAYER)
        why = layer.unusable_reason if layer is not None else "no text layer"
        return self._dead_end(loaded, f"{NEEDS_MODEL}: {why}" if why else NEEDS_MODEL)

    def _dead_end(self, loaded: LoadedPage, reason: str) -> Page:
        """A page nobody here can read: failed, with its text-layer text if it has any."""
        if has_text(loaded):
            page = page_from_text_layer(loaded, status=PageStatus.FAILED)
        else:
            page = error_page(loaded, "route", reason)
            page.errors = []
        page.reason = reason
        page.engine = None
        return page


def _final(page: Page, loaded: LoadedPage) -> Page:
    """The last touches every page gets: a model-read page checked against its text layer,
    typed tables, and what the loader noticed (a repaired file, a lowered DPI, skipped
    frames) as `loader: ...` flags, so nothing goes unsaid."""
    page = check_with_text_layer(page, loaded)
    annotate_page(page)
    page.flags.extend(f"loader: {w}" for w in loaded.warnings if f"loader: {w}" not in page.flags)
    return page


def _jobs(sources: Iterable[Any]) -> Iterator[Job]:
    """Sources -> jobs; folders and glob patterns are expanded with `loaders.iter_sources`."""
    if isinstance(sources, (str, Path, bytes, bytearray)) or hasattr(sources, "read"):
        sources = [sources]
    for source in sources:
        if isinstance(source, Job):
            yield source
        elif isinstance(source, (str, Path)) and (
            Path(source).is_dir() or glob.has_magic(str(source))
        ):
            import loaders

            for path in loaders.iter_sources([source]):
                yield Job(path)
        else:
            yield Job(source)
