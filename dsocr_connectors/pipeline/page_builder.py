"""One engine result + its loaded page -> a `Page`: run facts, parsed blocks, status.

Status rules for a single model run (recovery may change them afterwards):
- `finish_reason == "error"`: failed, reason "engine error: ...", no blocks;
- the parser failed on the output (it raised, or reported a `parse` error and fell back
  to one text block), or the Markdown exporter cannot write one of its blocks: failed,
  reason "parse error: ..." / "export error: ...", the error (stage `parse` / `export`)
  in `errors`, the raw output and whatever the parser made of it kept;
- `finish_reason == "eos"` and the parser raised no "repetition"/"truncated" flag: ok;
- `"repetition"` (the engine saw a loop, or the parser did): failed, "repetition loop";
- `"length"` (or the parser flagged "truncated"): failed, "hit the token limit".
A failed page keeps whatever the parser made of the partial output.

The parser is reached through `parse_raw` only, so it can be swapped in one place.
"""

from __future__ import annotations

from typing import Any

from core_model.engines.interface import PageResult
from dsocr_connectors.document import Page, PageError, PageStatus
from dsocr_connectors.export.markdown import block_to_markdown
from loaders.page import LoadedPage

LOOP_FLAGS = ("repetition",)
TRUNCATION_FLAGS = ("truncated",)


def parse_raw(raw: str, *, number: int, image_size: tuple[int, int] | None, prompt: str) -> Page:
    """Parse one raw model output with the project's parser (`dsocr_connectors.parsing`)."""
    from dsocr_connectors.parsing import parse_page

    return parse_page(raw, number=number, image_size=image_size, prompt=prompt)


def page_facts(loaded: LoadedPage) -> dict[str, Any]:
    """The geometry a loader knows about a page, as `Page` fields."""
    size = loaded.pixel_size
    return {
        "number": loaded.number,
        "label": loaded.label,
        "image_width": size[0] if size is not None else None,
        "image_height": size[1] if size is not None else None,
        "width_pt": loaded.width_pt,
        "height_pt": loaded.height_pt,
        "rotation": loaded.rotation,
    }


def export_error(page: Page) -> PageError | None:
    """Render each block's Markdown once, unguarded: the first block the exporter cannot
    write, as an error of stage `export` (None when every block renders)."""
    for block in page.blocks:
        try:
            block_to_markdown(page, block)
        except Exception as exc:
            message = f"page {page.number}, block {block.index}: {exc}"
            return PageError(stage="export", message=message, type=type(exc).__name__)
    return None


def failure_reason(page: Page) -> str | None:
    """Why a model run needs recovery ("repetition loop", "hit the token limit"), or None."""
    if page.finish_reason == "repetition" or any(f in page.flags for f in LOOP_FLAGS):
        return "repetition loop"
    if page.finish_reason == "length" or any(f in page.flags for f in TRUNCATION_FLAGS):
        return "hit the token limit"
    return None


def build_page(
    result: PageResult, loaded: LoadedPage, *, engine: str, mode: str, prompt: str
) -> Page:
    """Turn one engine result into a `Page`; never raises.

    Args:
        result: what the engine returned for this page.
        loaded: the page as loaded (geometry, label).
        engine: the engine's name, recorded on the page.
        mode: the resolution mode the page was read in.
        prompt: the prompt the page was read with.

    Returns:
        The page with blocks, run facts and a status by the rules in the module docstring.
    """
    errors: list[PageError] = []
    page = Page(number=loaded.number)
    if result.finish_reason != "error":
        try:
            page = parse_raw(result.text, number=loaded.number, image_size=loaded.pixel_size,
                             prompt=prompt)
        except Exception as exc:  # a parser bug must stay on its page
            errors.append(PageError(stage="parse", message=str(exc), type=type(exc).__name__))
        else:
            errors.extend(e for e in page.errors if e.stage == "parse")
            exported = export_error(page)
            if exported is not None:
                errors.append(exported)

    page = page.model_copy(update=page_facts(loaded))
    page.engine = engine
    page.mode = mode
    page.prompt = prompt
    page.raw_output = result.text
    page.finish_reason = result.finish_reason
    page.num_vision_tokens = result.num_vision_tokens or None
    page.num_output_tokens = result.num_output_tokens or None
    if result.num_vision_tokens:
        page.compression_ratio = round(result.num_output_tokens / result.num_vision_tokens, 4)
    page.timings = {**page.timings, **result.timings}
    page.errors = [*page.errors, *(e for e in errors if e not in page.errors)]
    page.recovery = []

    if result.finish_reason == "error":
        message = result.error or "the engine gave no reason"
        page.errors.append(PageError(stage="engine", message=message))
        page.status, page.reason = PageStatus.FAILED, f"engine error: {message}"
    elif errors:
        error = errors[0]
        page.status, page.reason = PageStatus.FAILED, f"{error.stage} error: {error.message}"
    else:
        reason = failure_reason(page)
        page.status = PageStatus.FAILED if reason else PageStatus.OK
        page.reason = reason
    return page


def error_page(loaded: LoadedPage, stage: str, exc: BaseException | str) -> Page:
    """A failed page for an error raised outside the engine (load, preprocess, ...)."""
    message = str(exc)
    kind = None if isinstance(exc, str) else type(exc).__name__
    return Page(
        **page_facts(loaded),
        status=PageStatus.FAILED,
        reason=f"{stage} error: {message}",
        errors=[PageError(stage=stage, message=message, type=kind)],
    )
