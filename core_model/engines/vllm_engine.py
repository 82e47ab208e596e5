"""The vLLM engine: vLLM's own DeepSeek-OCR support behind the streaming `Engine` interface.

vLLM (0.11.1 to 0.33, see `vllm_protocol.py`) ships `DeepseekOCRForCausalLM`, its image
processor and the per-request no-repeat n-gram logits processor `NGramPerReqLogitsProcessor`.
This engine builds a `vllm.LLM` the way DeepSeek's vLLM scripts and the vLLM recipe do and
drives its `LLMEngine` directly: one worker thread hands every submitted page to
`add_request` at once (vLLM's own scheduler batches them, continuously) and calls `step()`,
completing each page's future the moment vLLM reports it finished. `add_request`/`step`
exist with the same meaning in every supported release, and an `LLM` the caller built
works too.

Pages are sent as vLLM's processor reads Gundam pages (the only mode it serves faithfully;
other modes are refused, page by page, with `UnsupportedMode`), after the same image
preparation as every engine (`core_model.page_image.normalize_page_image`). `vllm` is
imported inside `VllmEngine` only; the mapping functions are plain Python and are tested
without vllm.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from core_model.engines.interface import (
    EngineClosed,
    PageRequest,
    PageResult,
    PageTokenCallback,
    TokenCallback,
    error_result,
    generate_all,
)
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import TABLE_CELL_IDS, VLLM_NGRAM_SIZE, VLLM_WINDOW
from core_model.engines.vllm_protocol import (
    DEFAULT_MAX_NEW_TOKENS,
    EOS_TEXT,
    IMAGE_TOKEN_ID,
    VLLM_MODES,
    UnsupportedMode,
    check_mode,
    count_image_tokens,
    judge_finish,
    map_finish_reason,
    mode_processor_kwargs,
    ngram_extra_args,
    strip_eos,
    version_warning,
)
from core_model.page_image import normalize_page_image

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS", "EOS_TEXT", "IMAGE_TOKEN_ID", "UnsupportedMode", "VllmEngine",
    "build_prompt_input", "judge_finish", "map_finish_reason", "mode_processor_kwargs",
    "ngram_extra_args", "to_page_result",
]

ADMIT_PER_STEP = 32  # pages handed to vLLM between two steps (bounds the pause per step)


def build_prompt_input(request: PageRequest) -> dict[str, Any]:
    """One vLLM prompt: the prompt text and the prepared page image.

    No `mm_processor_kwargs`: vLLM's processor defaults are the Gundam mode, the only one it
    serves (see `vllm_protocol`).

    Raises:
        UnsupportedMode: a mode other than gundam.
        ValueError: no `<image>` placeholder, an unknown mode, an image without pixels.
    """
    check_mode(request.mode, VLLM_MODES, engine="vllm")
    if "<image>" not in request.prompt:
        raise ValueError(f"prompt {request.prompt!r} has no <image> placeholder")
    return {
        "prompt": request.prompt,
        "multi_modal_data": {"image": normalize_page_image(request.image)},
    }


def page_result(
    text: str,
    token_ids: list[int],
    prompt_token_ids: list[int],
    raw_finish: str | None,
    *,
    key: Any = None,
    loop_detector: LoopDetector | None = None,
    timings: dict[str, float] | None = None,
) -> PageResult:
    """A finished vLLM request as a `PageResult`.

    The text keeps special tokens as text (the request used skip_special_tokens=False); a
    trailing EOS text is removed. A page that ran to the token limit with a looping tail
    (`loop_detector`) is reported as "repetition" (vLLM cannot stop it early; the report
    still says why the page is cut).
    """
    reason, error = judge_finish(raw_finish, token_ids, loop_detector)
    return PageResult(
        text=strip_eos(text),
        token_ids=token_ids,
        finish_reason=reason,
        num_vision_tokens=count_image_tokens(prompt_token_ids),
        num_prompt_tokens=len(prompt_token_ids),
        num_output_tokens=len(token_ids),
        timings=dict(timings or {}),
        error=error,
        key=key,
    )


def to_page_result(
    output: Any,
    key: Any = None,
    *,
    loop_detector: LoopDetector | None = None,
    timings: dict[str, float] | None = None,
) -> PageResult:
    """One complete vLLM `RequestOutput` as a `PageResult` (see `page_result`)."""
    completion = output.outputs[0]
    return page_result(
        completion.text or "",
        [int(t) for t in (completion.token_ids or [])],
        list(output.prompt_token_ids or []),
        completion.finish_reason,
        key=key, loop_detector=loop_detector, timings=timings,
    )


@dataclass
class _Page:
    """A submitted page and what vLLM has sent back for it so far."""

    request: PageRequest
    future: Future
    on_token: PageTokenCallback | None
    submitted: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    parts: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    prompt_token_ids: list[int] = field(default_factory=list)


class VllmEngine:
    """DeepSeek-OCR through vLLM, pages streamed into its scheduler.

    Args:
        model: checkpoint directory or Hugging Face id.
        max_new_tokens: default output limit per page.
        max_batch_size: vLLM's `max_num_seqs`, the pages decoded at once (also
            `concurrency`, the pages a caller should keep submitted).
        ngram_size, ngram_window, whitelist_ids: the no-repeat n-gram rule
            (DeepSeek's vLLM scripts: 20, 50, <td> </td>; the vLLM recipe uses 30, 90).
            ngram_size=None turns it off.
        loop_detector: labels pages that ran to the limit in a loop "repetition"
            (None: the default detector).
        gpu_memory_utilization: passed to `vllm.LLM`.
        llm_kwargs: further `vllm.LLM` arguments (tensor_parallel_size, dtype, ...).
        llm: an already built `vllm.LLM` (then model and the LLM arguments are unused).
        device, dtype: accepted for a uniform call from the pipeline and unused (vLLM picks
            its device; pass `llm_kwargs={"dtype": ...}`).
    """

    name = "vllm"
    supported_modes = VLLM_MODES

    def __init__(
        self,
        model: str | None = None,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_batch_size: int = 128,
        ngram_size: int | None = VLLM_NGRAM_SIZE,
        ngram_window: int = VLLM_WINDOW,
        whitelist_ids: Sequence[int] = TABLE_CELL_IDS,
        loop_detector: LoopDetector | None = None,
        gpu_memory_utilization: float = 0.9,
        llm_kwargs: dict[str, Any] | None = None,
        llm: Any = None,
        device: str | None = None,
        dtype: Any = None,
    ):
        del device, dtype  # vLLM picks its device; a dtype goes in llm_kwargs
        import vllm

        self._vllm = vllm
        warning = version_warning(str(getattr(vllm, "__version__", "0")))
        if warning:
            log.warning(warning)
        self.max_new_tokens = max_new_tokens
        self.extra_args = ngram_extra_args(ngram_size, ngram_window, whitelist_ids)
        self.loop_detector = loop_detector if loop_detector is not None else LoopDetector()
        if llm is None:
            if model is None:
                raise ValueError("VllmEngine needs model=<checkpoint directory or hub id>")
            from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor

            options = {
                "enable_prefix_caching": False,
                "mm_processor_cache_gb": 0,
                "logits_processors": [NGramPerReqLogitsProcessor],
                "max_model_len": 8192,
                "max_num_seqs": max_batch_size,
                "gpu_memory_utilization": gpu_memory_utilization,
            }
            options.update(llm_kwargs or {})
            llm = vllm.LLM(model=model, **options)
        self.llm = llm
        self.concurrency = int(max_batch_size)
        self._ids = itertools.count()
        self._inbox: deque[_Page] = deque()
        self._running: dict[str, _Page] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._broken: BaseException | None = None
        self._thread: threading.Thread | None = None

    def sampling_params(self, max_new_tokens: int | None, *, stream: bool = False) -> Any:
        """Greedy decoding, special tokens kept, the n-gram rule in `extra_args`; deltas
        every step when the page is streamed, else only the final output."""
        from vllm.sampling_params import RequestOutputKind

        return self._vllm.SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens or self.max_new_tokens,
            skip_special_tokens=False,
            extra_args=self.extra_args,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        """Queue one page for vLLM; the future completes when vLLM finishes it.

        With `on_token`, each step's new text is passed as it comes (on the engine's thread).

        Raises:
            EngineClosed: the engine was closed, or vLLM itself failed earlier.
        """
        page = _Page(request, Future(), on_token)
        with self._cond:
            if self._closed:
                raise EngineClosed("the vllm engine is closed")
            if self._broken is not None:
                raise EngineClosed(f"the vllm engine failed: {self._broken}")
            self._inbox.append(page)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dsocr-vllm", daemon=True)
                self._thread.start()
            self._cond.notify()
        return page.future

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page; results in request order, a bad page gets an error result."""
        return generate_all(self, requests, on_token=on_token)

    def close(self) -> None:
        """Stop: pages not finished are aborted in vLLM and their futures raise
        `EngineClosed`. The `vllm.LLM` itself stays up (`self.llm`) until it is dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        running, self._running = self._running, {}
        if running:
            try:
                self.llm.llm_engine.abort_request(list(running))
            except Exception as exc:  # vLLM may already be gone
                log.debug("aborting %d vLLM requests failed: %s", len(running), exc)
        pending = list(running.values()) + list(self._inbox)
        self._inbox.clear()
        _fail(pending, EngineClosed("the vllm engine is closed"))

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self) -> None:
        engine = self.llm.llm_engine
        while True:
            with self._cond:
                while not self._inbox and not self._running and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                taken = [self._inbox.popleft() for _ in range(min(len(self._inbox), ADMIT_PER_STEP))]
            for page in taken:
                self._admit(engine, page)
            if not self._running:
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # vLLM itself failed: every page in it is lost
                log.error("vLLM failed: %s: %s", type(exc).__name__, exc)
                with self._cond:
                    self._broken = exc
                    pending = list(self._running.values()) + list(self._inbox)
                    self._running.clear()
                    self._inbox.clear()
                _fail(pending, exc)
                return
            for output in outputs:
                self._collect(engine, output)

    def _admit(self, engine: Any, page: _Page) -> None:
        if not page.future.set_running_or_notify_cancel():
            return
        request = page.request
        try:
            prompt = build_prompt_input(request)
            params = self.sampling_params(request.max_new_tokens, stream=page.on_token is not None)
            request_id = f"dsocr-{next(self._ids)}"
            page.admitted = time.perf_counter()
            engine.add_request(request_id, prompt, params)
        except UnsupportedMode as exc:
            page.future.set_result(error_result(request, str(exc)))
            return
        except Exception as exc:  # this page only: a bad image, a prompt vLLM rejects
            message = f"vLLM refused the page: {type(exc).__name__}: {exc}"
            page.future.set_result(error_result(request, message))
            return
        self._running[request_id] = page

    def _collect(self, engine: Any, output: Any) -> None:
        page = self._running.get(output.request_id)
        if page is None:
            return
        completion = output.outputs[0]
        delta = completion.text or ""
        ids = [int(t) for t in (completion.token_ids or [])]
        page.parts.append(delta)
        page.token_ids.extend(ids)
        if output.prompt_token_ids:
            page.prompt_token_ids = list(output.prompt_token_ids)
        if page.on_token is not None and delta:
            try:
                page.on_token(ids[-1] if ids else -1, delta)
            except Exception as exc:
                del self._running[output.request_id]
                engine.abort_request([output.request_id])
                message = f"on_token callback failed: {type(exc).__name__}: {exc}"
                page.future.set_result(error_result(page.request, message))
                return
        if not output.finished:
            return
        del self._running[output.request_id]
        done = time.perf_counter()
        result = page_result(
            "".join(page.parts), page.token_ids, page.prompt_token_ids,
            completion.finish_reason, key=page.request.key, loop_detector=self.loop_detector,
            timings={"wait": page.admitted - page.submitted, "generate": done - page.admitted},
        )
        page.future.set_result(result)


def _fail(pages: list[_Page], exc: BaseException) -> None:
    for page in pages:
        if not page.future.done():
            try:
                page.future.set_exception(exc)
            except Exception:  # cancelled meanwhile
                pass
