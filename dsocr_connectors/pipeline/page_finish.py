"""Finishing a page once the engine's result is back: pure functions, so they can run in
another process.

`finish_result` builds and parses the page (`page_builder.build_page`), decides on a rerun
(`recovery.py`), plans the second reads of its figure regions (`deep/region.py`) and, when
there is nothing more to read, gives the page its final touches (`final_touches`: checked
against the text layer, typed tables, loader warnings). That is most of the CPU a page costs
outside the engine (~40-110 ms on real outputs, nearly all of it Python), which one thread
cannot do for a GPU that reads 20 pages a second: `Run` hands it to worker processes
(`loader_processes.LoaderProcesses.call`) on machines with the cores for them, and does it
inline elsewhere. Same inputs, same page, wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core_model.engines.interface import PageResult
from dsocr_connectors.deep.annotate import annotate_page
from dsocr_connectors.deep.region import RegionTask, plan_regions
from dsocr_connectors.deep.routing import RoutingPolicy, may_route
from dsocr_connectors.document import Page, PageStatus
from dsocr_connectors.pipeline import recovery
from dsocr_connectors.pipeline.page_builder import build_page
from dsocr_connectors.reconcile import check_with_text_layer
from loaders.page import LoadedPage


@dataclass(frozen=True)
class FinishSettings:
    """What of the converter's settings finishing a page needs."""

    engine_name: str
    prompt: str
    reparse: RoutingPolicy
    rerun_mode: str | None = None
    supported_modes: tuple[str, ...] | None = None


@dataclass
class Outcome:
    """What to do with a page: read it again in `rerun_mode`, read its `regions`, or (neither)
    it is final."""

    page: Page
    rerun_mode: str | None = None
    regions: list[RegionTask] = field(default_factory=list)
    # Finished without the pixels (`LoadedPage.without_pixels` of an image in memory, no
    # pixel file) and it has blocks a second read may serve: the caller, who has them,
    # plans its regions (`page_regions`) and gives it its final touches when there are none.
    needs_pixels: bool = False


def finish_result(result: PageResult, loaded: LoadedPage, mode: str, first: Page | None,
                  engine_wall: float, settings: FinishSettings) -> Outcome:
    """The page an engine result makes, and what is left to do for it.

    Args:
        result: the engine's result for the page (or its rerun).
        loaded: the page as loaded (image, text layer).
        mode: the mode it was read in.
        first: the failed first run when this result is its rerun.
        engine_wall: seconds from submission to result.
        settings: the converter's settings.
    """
    page = build_page(result, loaded, engine=settings.engine_name, mode=mode,
                      prompt=settings.prompt)
    page.timings.setdefault("engine_wall", engine_wall)
    if first is not None:
        page = recovery.after_rerun(first, page, loaded)
    elif recovery.needs_rerun(page) and (rerun := recovery.rerun_mode_for(
            mode, settings.rerun_mode, settings.supported_modes)):
        return Outcome(page, rerun_mode=rerun)
    elif page.status == PageStatus.FAILED:
        page = recovery.fall_back_or_fail(page, loaded, reason=page.reason or "failed")
    if not loaded.has_pixels and loaded.image_size is not None and _may_have_regions(page, settings):
        return Outcome(page, needs_pixels=True)
    regions = page_regions(page, loaded, settings)
    if not regions:
        page = final_touches(page, loaded)
    return Outcome(page, regions=regions)


def page_regions(page: Page, loaded: LoadedPage, settings: FinishSettings) -> list[RegionTask]:
    """The figure regions of a finished page to read a second time (crops of its image, read
    from its pixel file when it is not in memory)."""
    if not loaded.has_pixels or not _may_have_regions(page, settings):
        return []
    return plan_regions(page, loaded.load_image(), settings.reparse)


def _may_have_regions(page: Page, settings: FinishSettings) -> bool:
    if page.engine != settings.engine_name:
        return False  # a text-layer fallback has no model boxes to crop
    if page.status not in (PageStatus.OK, PageStatus.RECOVERED):
        return False
    return any(block.boxes and may_route(block, settings.reparse) for block in page.blocks)


def final_touches(page: Page, loaded: LoadedPage) -> Page:
    """The last touches every page gets: a model-read page checked against its text layer
    (`dsocr_connectors.reconcile`), typed tables, and what the loader noticed (a repaired
    file, a lowered DPI, skipped frames) as `loader: ...` flags, so nothing goes unsaid."""
    page = check_with_text_layer(page, loaded)
    annotate_page(page)
    page.flags.extend(f"loader: {w}" for w in loaded.warnings if f"loader: {w}" not in page.flags)
    return page
