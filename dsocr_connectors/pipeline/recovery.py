"""What happens to a page whose model run failed; every step is recorded on the page.

The policy, in order:
1. A page that looped (`repetition`) or hit the token limit (`length`, or the parser found
   the output truncated) is read once more in another resolution mode (`rerun_mode_for`). A
   different mode changes the vision tokens, which is usually enough to leave a loop. If the
   rerun ends cleanly the page is `recovered`.
2. Otherwise, and for engine errors (not rerun: the same input would fail the same way), the
   page falls back to the PDF text layer when the page has one: status `fallback`.
3. Otherwise the page is `failed`, keeping the partial content of the better attempt (the one
   that parsed into more blocks; the first on a tie).

Rerun modes: gundam -> base (no tiling: other tokens and a quarter of the cost), base -> large
(more detail), large -> base, small -> base, tiny -> small. A configured alternate mode
(`Converter(rerun_mode=...)`) wins when it differs from the failed run's mode. Only modes
the engine reads are chosen (`supported_modes`: DeepSeek-OCR-2 has no large, vLLM serves
gundam alone); with no other mode to try, the page goes straight to step 2.
"""

from __future__ import annotations

from collections.abc import Iterable

from dsocr_connectors.document import Page, PageError, PageStatus, RecoveryStep
from dsocr_connectors.pipeline.page_builder import failure_reason
from dsocr_connectors.text_layer import has_text, page_from_text_layer
from loaders.page import LoadedPage

RERUN_MODES = {"gundam": "base", "base": "large", "large": "base", "small": "base", "tiny": "small"}


def rerun_mode_for(
    mode: str, alternate: str | None = None, supported: Iterable[str] | None = None
) -> str | None:
    """The mode to rerun a failed page in (see the module docstring), among the modes the
    engine reads (`supported`, its `supported_modes`; None: any): the preferred one when it
    can, else the first other mode it reads; None when it reads no other mode (vLLM serves
    gundam alone; a rerun in the same mode would give the same output)."""
    allowed = None if supported is None else set(supported)
    preferred = [alternate] if alternate else []
    preferred += [RERUN_MODES.get(mode, "base"), "base", "gundam", "small", "large", "tiny"]
    for candidate in preferred:
        if candidate and candidate != mode and (allowed is None or candidate in allowed):
            return candidate
    return None


def needs_rerun(page: Page) -> bool:
    """A first model run that looped or ran out of tokens (engine errors are not rerun)."""
    return (
        page.status == PageStatus.FAILED
        and page.finish_reason != "error"
        and not page.recovery
        and failure_reason(page) is not None
    )


def after_rerun(first: Page, second: Page, loaded: LoadedPage) -> Page:
    """Combine a failed first run and its rerun into the page's final state."""
    step = RecoveryStep(
        action="rerun", reason=first.reason or "failed", mode=second.mode,
        finish_reason=second.finish_reason,
    )
    errors = [*first.errors, *second.errors]
    if second.status == PageStatus.OK:
        return second.model_copy(
            update={"status": PageStatus.RECOVERED, "reason": first.reason, "recovery": [step],
                    "errors": errors}
        )
    partial = second if len(second.blocks) > len(first.blocks) else first
    partial = partial.model_copy(update={"errors": errors})
    reason = f"{first.reason}; rerun in {second.mode}: {second.reason or 'failed'}"
    return fall_back_or_fail(partial, loaded, reason=reason, steps=[step])


def fall_back_or_fail(
    partial: Page, loaded: LoadedPage, *, reason: str, steps: list[RecoveryStep] | None = None
) -> Page:
    """The text-layer fallback when the page has text, else `failed` with partial content.

    Args:
        partial: the page as the model left it (blocks, raw output, errors are kept).
        loaded: the loaded page, for its text layer.
        reason: why the model's result is not usable.
        steps: recovery steps taken so far.

    Returns:
        A `fallback` page (text-layer blocks; the model's raw output and finish reason kept
        for the record) or a `failed` page with the model's partial blocks.
    """
    steps = list(steps or [])
    errors = list(partial.errors)
    if has_text(loaded):
        try:
            page = page_from_text_layer(loaded, status=PageStatus.FALLBACK)
        except Exception as exc:
            errors.append(PageError(stage="recovery", message=str(exc), type=type(exc).__name__))
        else:
            steps.append(RecoveryStep(action="text_layer", reason=reason))
            return page.model_copy(
                update={
                    "reason": f"{reason}; text layer used",
                    "recovery": steps,
                    "errors": errors,
                    "raw_output": partial.raw_output,
                    "finish_reason": partial.finish_reason,
                    "prompt": partial.prompt,
                    "num_vision_tokens": partial.num_vision_tokens,
                    "num_output_tokens": partial.num_output_tokens,
                    "timings": {**partial.timings, **page.timings},
                }
            )
    steps.append(RecoveryStep(action="give_up", reason=reason))
    return partial.model_copy(
        update={"status": PageStatus.FAILED, "reason": reason, "recovery": steps, "errors": errors}
    )
