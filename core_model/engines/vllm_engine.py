"""The vLLM engine: vLLM's own DeepSeek-OCR support behind the `Engine` interface.

vLLM (>= 0.11) ships `DeepseekOCRForCausalLM`, its image processor and the per-request
no-repeat n-gram logits processor `NGramPerReqLogitsProcessor`; this module only builds the
inputs the way DeepSeek's vLLM scripts and the vLLM recipe do and maps the outputs to
`PageResult`. `vllm` is imported inside `VllmEngine` only; the mapping functions are plain
Python and are tested without vllm.

Resolution modes reach vLLM's DeepSeek-OCR processor as per-request `mm_processor_kwargs`
(base_size, image_size, crop_mode). vLLM releases whose processor reads only its module
constants (base 1024, image 640, crop: the Gundam mode) ignore them; see docs/engines.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from core_model.engines.interface import FinishReason, PageRequest, PageResult, TokenCallback
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import TABLE_CELL_IDS, VLLM_NGRAM_SIZE, VLLM_WINDOW

log = logging.getLogger(__name__)

IMAGE_TOKEN_ID = 128815
EOS_TEXT = "<｜end▁of▁sentence｜>"
DEFAULT_MAX_NEW_TOKENS = 8192

# mode -> DeepSeek-OCR processor knobs, as listed in DeepSeek's vLLM config.py.
MODE_PROCESSOR_KWARGS: dict[str, dict[str, Any]] = {
    "tiny": {"base_size": 512, "image_size": 512, "crop_mode": False},
    "small": {"base_size": 640, "image_size": 640, "crop_mode": False},
    "base": {"base_size": 1024, "image_size": 1024, "crop_mode": False},
    "large": {"base_size": 1280, "image_size": 1280, "crop_mode": False},
    "gundam": {"base_size": 1024, "image_size": 640, "crop_mode": True},
}

_FINISH_REASONS: dict[str | None, FinishReason] = {"stop": "eos", "length": "length"}


def mode_processor_kwargs(mode: str) -> dict[str, Any]:
    """The `mm_processor_kwargs` for a resolution mode (case-insensitive).

    Raises:
        ValueError: unknown mode (the message lists the known ones).
    """
    key = mode.lower()
    if key not in MODE_PROCESSOR_KWARGS:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODE_PROCESSOR_KWARGS)}")
    return dict(MODE_PROCESSOR_KWARGS[key])


def ngram_extra_args(
    ngram_size: int | None, window_size: int, whitelist_ids: Sequence[int]
) -> dict[str, Any] | None:
    """`SamplingParams.extra_args` read by vLLM's `NGramPerReqLogitsProcessor` (None: off)."""
    if ngram_size is None:
        return None
    return {
        "ngram_size": int(ngram_size),
        "window_size": int(window_size),
        "whitelist_token_ids": [int(i) for i in whitelist_ids],
    }


def build_prompt_input(request: PageRequest) -> dict[str, Any]:
    """One vLLM prompt dict: prompt text, the page image, the mode's processor kwargs."""
    if "<image>" not in request.prompt:
        raise ValueError(f"prompt {request.prompt!r} has no <image> placeholder")
    image = request.image if request.image.mode == "RGB" else request.image.convert("RGB")
    return {
        "prompt": request.prompt,
        "multi_modal_data": {"image": image},
        "mm_processor_kwargs": mode_processor_kwargs(request.mode),
    }


def map_finish_reason(reason: str | None) -> FinishReason:
    """vLLM's finish reason -> ours: stop -> eos, length -> length, anything else -> error."""
    return _FINISH_REASONS.get(reason, "error")


def judge_finish(
    raw_reason: str | None, token_ids: list[int], loop_detector: LoopDetector | None, *,
    server: str = "vLLM",
) -> tuple[FinishReason, str | None]:
    """A server's finish reason -> ours and an error message; a page that hit the token limit
    with a looping tail is called `repetition` (the server could not stop it early)."""
    reason = map_finish_reason(raw_reason)
    if reason == "error":
        return reason, f"{server} finished the request with reason {raw_reason!r}"
    if reason == "length" and loop_detector is not None:
        if loop_detector.loop_start(token_ids) is not None:
            return "repetition", None
    return reason, None


def to_page_result(
    output: Any,
    key: Any = None,
    *,
    loop_detector: LoopDetector | None = None,
    timings: dict[str, float] | None = None,
) -> PageResult:
    """Map one vLLM `RequestOutput` to a `PageResult`.

    The text keeps special tokens as text (the request used skip_special_tokens=False); a
    trailing EOS text, if the server kept it, is removed. `token_ids` are the generated ids
    as vLLM returns them. A page that ran to the token limit and whose tail is a repetition
    loop (`loop_detector`) is reported with finish reason "repetition" (vLLM cannot stop it
    early; the report still says why the page is cut).
    """
    completion = output.outputs[0]
    text = completion.text or ""
    if text.endswith(EOS_TEXT):
        text = text[: -len(EOS_TEXT)]
    token_ids = [int(t) for t in (completion.token_ids or [])]
    prompt_ids = list(output.prompt_token_ids or [])
    reason, error = judge_finish(completion.finish_reason, token_ids, loop_detector)
    return PageResult(
        text=text,
        token_ids=token_ids,
        finish_reason=reason,
        num_vision_tokens=sum(1 for t in prompt_ids if t == IMAGE_TOKEN_ID),
        num_prompt_tokens=len(prompt_ids),
        num_output_tokens=len(token_ids),
        timings=dict(timings or {}),
        error=error,
        key=key,
    )


def error_result(request: PageRequest, message: str) -> PageResult:
    """The result of a page that could not be read."""
    return PageResult(text="", finish_reason="error", error=message, key=request.key)


class VllmEngine:
    """DeepSeek-OCR through vLLM's offline `LLM.generate`.

    Args:
        model: checkpoint directory or Hugging Face id.
        max_new_tokens: default output limit per page.
        max_batch_size: vLLM's `max_num_seqs`.
        ngram_size, ngram_window, whitelist_ids: the no-repeat n-gram rule
            (DeepSeek's vLLM scripts: 20, 50, <td> </td>; the vLLM recipe uses 30, 90).
            ngram_size=None turns it off.
        loop_detector: labels pages that ran to the limit in a loop "repetition"
            (None: off).
        gpu_memory_utilization: passed to `vllm.LLM`.
        llm_kwargs: further `vllm.LLM` arguments (tensor_parallel_size, dtype, ...).
        llm: an already built `vllm.LLM` (then model and the LLM arguments are unused).
    """

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_batch_size: int = 64,
        ngram_size: int | None = VLLM_NGRAM_SIZE,
        ngram_window: int = VLLM_WINDOW,
        whitelist_ids: Sequence[int] = TABLE_CELL_IDS,
        loop_detector: LoopDetector | None = None,
        gpu_memory_utilization: float = 0.9,
        llm_kwargs: dict[str, Any] | None = None,
        llm: Any = None,
    ):
        import vllm

        self._vllm = vllm
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

    def sampling_params(self, max_new_tokens: int | None) -> Any:
        """Greedy decoding, special tokens kept, the n-gram rule in `extra_args`."""
        return self._vllm.SamplingParams(
            temperature=0.0,
            max_tokens=max_new_tokens or self.max_new_tokens,
            skip_special_tokens=False,
            extra_args=self.extra_args,
        )

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page; results in request order, a bad page gets an error result.

        vLLM's offline API does not stream: `on_token` is called once per page when it is
        done, with its last token id and its whole text.
        """
        results: list[PageResult | None] = [None] * len(requests)
        inputs, params, positions = [], [], []
        for i, request in enumerate(requests):
            try:
                inputs.append(build_prompt_input(request))
                params.append(self.sampling_params(request.max_new_tokens))
                positions.append(i)
            except Exception as exc:
                results[i] = error_result(request, f"page {i}: {exc}")
        outputs = self._run(inputs, params, [requests[i] for i in positions], positions)
        for i, output in zip(positions, outputs, strict=True):
            results[i] = output
            if on_token is not None and output.finish_reason != "error":
                last = output.token_ids[-1] if output.token_ids else -1
                on_token(i, last, output.text)
        return [r for r in results if r is not None]

    def _run(
        self,
        inputs: list[dict],
        params: list[Any],
        requests: list[PageRequest],
        indices: list[int],
    ) -> list[PageResult]:
        """One batched call; if vLLM rejects the batch, retry page by page to isolate it."""
        if not inputs:
            return []
        start = time.perf_counter()
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
        except Exception as exc:
            if len(inputs) == 1:
                message = f"page {indices[0]}: vLLM failed: {type(exc).__name__}: {exc}"
                return [error_result(requests[0], message)]
            log.warning(
                "vLLM rejected a batch of %d pages (%s); retrying one by one", len(inputs), exc
            )
            return [
                self._run([x], [p], [r], [i])[0]
                for x, p, r, i in zip(inputs, params, requests, indices, strict=True)
            ]
        seconds = time.perf_counter() - start
        return [
            to_page_result(
                out, r.key, loop_detector=self.loop_detector, timings={"batch_generate": seconds}
            )
            for out, r in zip(outputs, requests, strict=True)
        ]
