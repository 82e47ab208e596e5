"""`Converter`: files -> loaders -> the engine, page by page -> parser -> `Document`.

Pages stream: the loading worker (`feed.py`) renders pages ahead and routes them, each page
for the model is submitted to the engine the moment it is ready (`Engine.submit`, up to
`max_in_flight` at once), and each result is finished the moment it comes back
(`stream.py`): parsed, rerun once in another mode if it looped or hit the token limit
(`recovery.py`), its chart regions re-read (`deep/`), all through the same stream. There is
no batch barrier: pages of many documents share the engine, and a slow page holds up only
its own document. Pages are put back per document in their order; documents are emitted in
input order (`iter_documents`), or as each completes (`ordered=False`, `iter_done`).
A page never raises out of this: engine, parse, loader and text-layer errors become that
page's `errors` and status, and a future that raises (a closed engine) fails its page with
the reason. Only a broken loading worker, or a bug, ends the run.

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
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    MODES,
    as_streaming,
    engine_concurrency,
)
from dsocr_connectors.deep.routing import RoutingPolicy
from dsocr_connectors.document import Document, Page, PageStatus
from dsocr_connectors.pipeline import loader_processes as loader_pool
from dsocr_connectors.pipeline.engine_choice import TEXT_LAYER, is_text_layer, resolve_engine
from dsocr_connectors.pipeline.feed import Job
from dsocr_connectors.pipeline.page_builder import error_page
from dsocr_connectors.pipeline.stream import Run
from dsocr_connectors.text_layer import has_text, page_from_text_layer
from loaders.page import LoadedPage

log = logging.getLogger(__name__)

NEEDS_MODEL = "needs a model (no model configured)"
NO_TEXT_LAYER = "no text layer (ocr='never')"
OCR_CHOICES = ("auto", "always", "never")
MIN_IN_FLIGHT = 8
MAX_IN_FLIGHT = 1024  # ~6 GB of A4 page images at 144 dpi
LOOKAHEAD_PAGES = 2  # pages a document's loader renders ahead of the feed


def default_max_in_flight(engine: Any) -> int:
    """Pages in flight for `engine`: twice what it works on at once (its `concurrency`), so
    it always has the next pages waiting while the finished ones are parsed; 8 to 1024."""
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, 2 * engine_concurrency(engine)))


class Converter:
    """Converts PDFs and images into `Document`s with an engine, the text layer, or both.

    Args:
        engine: an `Engine`, or a name: "native", "vllm", "openai", "text-layer", or
            "module:attr" for a custom engine (see `engine_choice.py`). None: the native
            engine if `model` is given, else no model (text layers only).
        model: the model directory (or id) for engines that load one; for "openai" the
            served model name (None: the one the server lists).
        engine_options: more keyword arguments for a named engine, e.g.
            `{"base_url": "http://gpu-box:8000/v1", "api_key": ...}` for "openai" (see
            `OpenAIEngine`).
        engine_process: load the named engine in a process of its own
            (`core_model.engines.engine_process`), so that its thread, which launches the
            GPU's work, shares no GIL with loading, streaming and finishing pages. None: for
            the native engine on a CUDA device (POSIX); False: never; True: any named
            engine. An engine object is used where it is.
        mode: resolution mode: tiny, small, base, large, gundam.
        prompt: the prompt; default the grounding Markdown prompt.
        ocr: "always", "auto" or "never" (see the module docstring); None: "always" with a
            model, "auto" without.
        dpi: PDF rendering resolution.
        max_in_flight: the cap on pages in flight: handed over by the loader and not yet
            final (waiting for the engine, at the engine, being finished); also the cap on
            requests at the engine at once (figure re-reads count). None: twice the
            engine's `concurrency` (8 to 1024), which keeps it full without tuning.
        device: the engine's device ("cuda", "cuda:1", "cpu"); None: the engine's choice.
        max_new_tokens: the output token limit per page; None: the engine's default.
        pages: 1-based page numbers to convert in every document; None: all.
        password: for encrypted PDFs.
        rerun_mode: the mode to rerun failed pages in; None: `recovery.RERUN_MODES`.
        max_documents: documents open at once (started and not yet emitted); None:
            `max_in_flight`, so that every page in flight may come from another document.
        loader_processes: processes rendering PDF pages (`loader_processes.py`); 0: one
            thread. None: with a model, one per 4 cores up to 4 on machines of 8 cores or
            more (a fast GPU reads pages faster than one thread renders them), else 0.
            They start when the converter is made if it loads its engine (given an engine
            object: on first use), see `wait_ready`.
        finish_processes: processes finishing pages after the engine (parse, region
            planning, the text-layer check: `page_finish.py`); 0: the consuming thread.
            None: as `loader_processes` (one thread finishes ~10-25 pages a second).
        batch_size: deprecated alias of `max_in_flight` (it used to be pages per engine
            call; there are no engine calls of many pages any more).
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
        max_in_flight: int | None = None,
        device: str | None = None,
        max_new_tokens: int | None = None,
        pages: Iterable[int] | None = None,
        password: str | None = None,
        rerun_mode: str | None = None,
        max_documents: int | None = None,
        progress: bool | None = False,
        reparse: str | RoutingPolicy = "charts",
        engine_options: dict[str, Any] | None = None,
        loader_processes: int | None = None,
        batch_size: int | None = None,
        finish_processes: int | None = None,
        engine_process: bool | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if rerun_mode is not None and rerun_mode not in MODES:
            raise ValueError(f"unknown rerun mode {rerun_mode!r}; choose one of {', '.join(MODES)}")
        if ocr is not None and ocr not in OCR_CHOICES:
            raise ValueError(f"unknown ocr {ocr!r}; choose one of {', '.join(OCR_CHOICES)}")
        if batch_size is not None:
            warnings.warn("Converter(batch_size=...) is deprecated; it is now the cap on pages "
                          "in flight: use max_in_flight", DeprecationWarning, stacklevel=2)
            max_in_flight = batch_size if max_in_flight is None else max_in_flight
        for label, value in (("max_in_flight", max_in_flight), ("max_documents", max_documents)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be at least 1, not {value}")
        # A converter that loads its engine starts its loading and finishing processes now,
        # beside that load (~1 s each of interpreter and imports), so the first document's
        # pages do not wait; given an engine object (a server's per-request converters), it
        # starts them on first use, the calling thread rendering until they answer.
        loads_engine = engine is None or isinstance(engine, str)
        wants_model = (engine is not None or model is not None) and not (
            engine == TEXT_LAYER if isinstance(engine, str) else is_text_layer(engine))
        available = loader_pool.available()
        if loader_processes is None:
            loader_processes = loader_pool.default_workers() if wants_model else 0
        self.loader_processes = loader_processes if available else 0
        if finish_processes is None:
            finish_processes = loader_pool.default_workers() if wants_model else 0
        self.finish_processes = finish_processes if available else 0
        self._loader_pool = self._new_pool(self.loader_processes, start=loads_engine)
        self._finish_pool = self._new_pool(self.finish_processes, start=loads_engine)
        self._loader_pool_lock = threading.Lock()  # runs may share this converter
        try:
            self.engine = resolve_engine(
                engine, model=model, device=device, max_new_tokens=max_new_tokens,
                engine_options=engine_options, process=engine_process,
            )
        except BaseException:
            self._close_pools()
            raise
        self._owns_engine = isinstance(engine, str) or (engine is None and self.engine is not None)
        self.has_model = self.engine is not None and not is_text_layer(self.engine)
        if ocr == "always" and not self.has_model:
            self.close()
            raise ValueError("ocr='always' needs a model: pass model=... or engine=...")
        if ocr is None:
            ocr = "always" if self.has_model else "auto"
        # Batch-only engines (just `generate`) get `submit` from a wrapper.
        self.streaming_engine = as_streaming(self.engine) if self.has_model else None
        self.max_in_flight = max_in_flight or default_max_in_flight(self.streaming_engine)
        self.max_documents = max_documents or self.max_in_flight
        self.model = model
        self.mode = mode
        self.prompt = prompt or GROUNDING_MARKDOWN_PROMPT
        self.ocr = ocr
        self.dpi = dpi
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.pages = sorted(set(pages)) if pages is not None else None
        self.password = password
        self.rerun_mode = rerun_mode
        self.progress = progress
        self.reparse = reparse if isinstance(reparse, RoutingPolicy) else RoutingPolicy(reparse)

    @staticmethod
    def _new_pool(processes: int, *, start: bool) -> loader_pool.LoaderProcesses | None:
        if processes < 1:
            return None
        pool = loader_pool.LoaderProcesses(processes)
        if start:
            pool.start()
        return pool

    def wait_ready(self, timeout: float | None = 60.0) -> bool:
        """Start the loading and finishing processes if they are not yet, and wait until
        they are up (a converter that loads its engine starts them when it is made; until
        they are, pages are rendered and finished in this process, more slowly). True when
        they are, False after `timeout` seconds. A service can call it before taking work;
        converting does not need it."""
        pools = [p for p in (self._loader_pool, self._finish_pool) if p is not None]
        return all(pool.wait_started(timeout) for pool in pools)

    def close(self) -> None:
        """Stop the loading processes, if any, and the engine if this converter made it (an
        engine object passed in is the caller's to close); close the PDFs kept open for text
        layers read after the model (`loaders.pdf.close_text_documents`)."""
        from loaders.pdf import close_text_documents

        close_text_documents()
        self._close_pools()
        close = getattr(self.engine, "close", None)
        if self._owns_engine and callable(close):
            close()
            self._owns_engine = False

    def _close_pools(self) -> None:
        for pool in (self._loader_pool, self._finish_pool):
            if pool is not None:
                pool.close()
        self._loader_pool = self._finish_pool = None

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def batch_size(self) -> int:
        """Deprecated: `max_in_flight`."""
        return self.max_in_flight

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
        return next(self.iter_documents([Job(source, name=name)]))

    def iter_documents(self, sources: Iterable[Any], *, ordered: bool = True) -> Iterator[Document]:
        """Convert many sources; their pages share the engine.

        A source is a path, bytes, a binary file object or a `Job`; a folder or a glob
        pattern stands for the files under it (`loaders.iter_sources`).

        Args:
            sources: what to convert.
            ordered: documents in input order (a document that finishes early waits for
                the ones before it, while the engine goes on with later pages); False:
                each document as soon as its last page is final.
        """
        for _, document in self.iter_done(sources, ordered=ordered):
            yield document

    def iter_done(self, sources: Iterable[Any], *, ordered: bool = False
                  ) -> Iterator[tuple[Job, Document]]:
        """Each source's `Job` with its `Document`, by default as each document completes.

        Sources given as `Job`s come back as the same objects, so callers can match
        documents to their own records in completion order.
        """
        for job, item in Run(self, _jobs(sources), ordered=ordered):
            if isinstance(item, Document):
                yield job, item

    def iter_pages(self, source: Any, *, name: str | None = None) -> Iterator[Page]:
        """The pages of one source, each as soon as it and the pages before it are done."""
        for _, item in Run(self, [Job(source, name=name)], ordered=True):
            if isinstance(item, Page):
                yield item

    def _metadata(self) -> dict[str, Any]:
        return {"engine": self.engine_name, "mode": self.mode, "ocr": self.ocr}

    def _finisher(self) -> loader_pool.LoaderProcesses | None:
        """The processes that finish pages (`finish_processes`), started on first use; None:
        pages are finished on the consuming thread."""
        if self.finish_processes < 1:
            return None
        with self._loader_pool_lock:
            if self._finish_pool is None:  # closed, then used again
                self._finish_pool = self._new_pool(self.finish_processes, start=False)
            return self._finish_pool

    # -- the loading side (runs in the feed's worker thread) ----------------------------------

    def _open_pages(self, job: Job) -> Iterable[LoadedPage]:
        """The one place pages are loaded (`loaders.iter_pages`)."""
        import loaders

        pages = job.pages if job.pages is not None else self.pages
        # The model reads every page: nothing needs the text layer before a page's result
        # is checked against it, so it is read then, from the file (`text_layer="later"`),
        # where the page is finished, beside the GPU's work; its ruled tables (most of the
        # cost of a page with tables) only for a page that falls back to its text layer
        # (`loaders.read_skipped_tables`).
        is_pdf_file = _is_pdf_file(job.source)
        later = self.ocr == "always" and self.password is None and is_pdf_file
        options = {"dpi": self.dpi, "pages": pages, "password": self.password,
                   "name": job.name, "extract_tables": not later,
                   "text_layer": "later" if later else True}
        if self.loader_processes > 0 and is_pdf_file:
            with self._loader_pool_lock:
                if self._loader_pool is None:  # closed, then used again
                    self._loader_pool = self._new_pool(self.loader_processes, start=True)
            return self._loader_pool.iter_pages(Path(job.source), **options)
        loaded = loaders.iter_pages(job.source, **options)
        return loaders.prefetch(loaded, max_in_flight=LOOKAHEAD_PAGES)  # renders ahead

    def _route(self, loaded: LoadedPage) -> Page | None:
        """A final page for text-layer reads and dead ends, None for the model."""
        layer = loaded.text_layer
        # With ocr="always" the layer is not looked at here: it may be a `LaterTextLayer`,
        # read where the page is finished.
        if self.has_model and (self.ocr == "always" or (
                self.ocr == "auto" and not (layer is not None and layer.is_usable))):
            return None if loaded.has_pixels else error_page(loaded, "load", "no page image to read")
        is_usable = layer is not None and layer.is_usable
        if self.has_model:
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


def _is_pdf_file(source: Any) -> bool:
    return (isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".pdf"
            and Path(source).is_file())


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
