"""A stand-in `vllm` for CPU tests, shaped like the real API the vLLM engine uses, plus a
transcription of how vLLM's DeepSeek-OCR processor tiles a page and counts its image tokens.

The transcription was written from reading vLLM's `transformers_utils/processors/
deepseek_ocr.py` and `model_executor/models/deepseek_ocr.py` (releases 0.11.1 to 0.33.0);
it is not their code. What it says:

- The prompt positions vLLM reserves for a page (`get_num_image_tokens`, called with the
  module constants BASE_SIZE=1024, IMAGE_SIZE=640 and cropping=CROP_MODE=True in every
  release): 16 x 17 + 1, plus (10 x rows) x (10 x columns + 1) when the page is larger than
  640 on a side and is tiled into the grid `upstream_grid` picks.
- What the processor makes of a page for given `base_size`, `image_size`, `crop_mode`
  (`upstream_processor`): tiles only with crop_mode and a page larger than image_size; the
  global view squashed to image_size first whenever crop_mode is False, then padded to
  base_size. Releases before 0.19 take base_size and image_size from the constants whatever
  the request says (`honours_sizes=False`).

The stand-in (`install`) offers `vllm.LLM(model, **kwargs).llm_engine` with
`add_request(request_id, prompt, params)`, `step()`, `abort_request(ids)`,
`has_unfinished_requests()`; `vllm.SamplingParams`; `vllm.sampling_params.RequestOutputKind`;
`vllm.model_executor.models.deepseek_ocr.NGramPerReqLogitsProcessor`. Its `add_request`
builds the prompt ids like vLLM (bos, text, the reserved image positions) and refuses what
vLLM refuses (no `<image>`, a processor output whose token count is not the reserved one);
each page then "decodes" one word per `step()` of `page WxH rgb(R,G,B)` (the image it got).
A prompt containing BOOM is rejected by `add_request`, DIE makes `step()` fail, LOOP runs
to the token limit in a loop, WAIT=N adds N idle steps.
"""

from __future__ import annotations

import enum
import math
import re
import sys
import threading
import time
import types
from dataclasses import dataclass, field

from PIL import Image

IMAGE_TOKEN_ID = 128815
BOS_ID = 0
BASE_SIZE, IMAGE_SIZE, MIN_CROPS, MAX_CROPS = 1024, 640, 2, 6


# -- the transcription ----------------------------------------------------------------------


def upstream_candidate_grids(min_num: int = MIN_CROPS, max_num: int = MAX_CROPS) -> list:
    """Grids (columns, rows) with min_num..max_num tiles; collected in a set in the order
    upstream adds them, then sorted by tile count (so ties keep the set's order)."""
    grids = set()
    for n in range(min_num, max_num + 1):
        for cols in range(1, n + 1):
            for rows in range(1, n + 1):
                if min_num <= cols * rows <= max_num:
                    grids.add((cols, rows))
    return sorted(grids, key=lambda g: g[0] * g[1])


def upstream_grid(width: int, height: int, image_size: int = IMAGE_SIZE) -> tuple[int, int]:
    """The tile grid vLLM counts tokens for (crop mode): (1, 1) for a page within one tile,
    else the grid whose aspect ratio is closest; on a tie the later grid wins while the page
    area exceeds half the grid's pixel area."""
    if width <= image_size and height <= image_size:
        return (1, 1)
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in upstream_candidate_grids():
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def _queries(side: int) -> int:
    return math.ceil((side // 16) / 4)  # patch 16, then the 4x compressor


def _count(base_size: int, image_size: int, grid: tuple[int, int]) -> int:
    q = _queries(base_size)
    total = q * (q + 1) + 1
    cols, rows = grid
    if cols > 1 or rows > 1:
        t = _queries(image_size)
        total += (t * rows) * (t * cols + 1)
    return total


def upstream_placeholder_count(width: int, height: int) -> int:
    """The image positions vLLM reserves in the prompt for a page (every release)."""
    return _count(BASE_SIZE, IMAGE_SIZE, upstream_grid(width, height))


@dataclass(frozen=True)
class ProcessorOutput:
    num_tokens: int
    grid: tuple[int, int]
    global_view: tuple  # ("pad", B): fit and pad to B; ("squash", S, B): resized to S x S, padded to B


def upstream_processor(
    width: int, height: int, *, base_size: int = BASE_SIZE, image_size: int = IMAGE_SIZE,
    crop_mode: bool = True, honours_sizes: bool = True,
) -> ProcessorOutput:
    """What vLLM's DeepSeek-OCR processor makes of a page for these kwargs."""
    if not honours_sizes:
        base_size, image_size = BASE_SIZE, IMAGE_SIZE
    if crop_mode and (width > image_size or height > image_size):
        grid = upstream_grid(width, height, image_size)
    else:
        grid = (1, 1)
    view = ("pad", base_size) if crop_mode else ("squash", image_size, base_size)
    return ProcessorOutput(_count(base_size, image_size, grid), grid, view)


# -- the stand-in vllm ----------------------------------------------------------------------


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class SamplingParams:
    def __init__(self, **kwargs):
        self.output_kind = RequestOutputKind.CUMULATIVE
        self.__dict__.update(kwargs)


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class _Running:
    prompt_ids: list[int]
    params: SamplingParams
    words: list[str]
    ids: list[int]
    finish: str
    wait: int
    die: bool
    sent: int = 0


@dataclass
class FakeLLMEngine:
    """Records what it is given; `max_running` is the most requests it held at once."""

    added: list[tuple[str, dict, SamplingParams]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    running: dict[str, _Running] = field(default_factory=dict)
    max_running: int = 0
    steps: int = 0
    step_delay: float = 0.0
    gate: threading.Event | None = None  # set: step() waits for it first

    def add_request(self, request_id: str, prompt: dict, params: SamplingParams) -> str:
        text = prompt["prompt"]
        if text.count("<image>") != 1:
            raise ValueError("the prompt needs exactly one <image> for one image")
        if "BOOM" in text:
            raise ValueError("prompt too long")
        image = prompt["multi_modal_data"]["image"]
        kwargs = prompt.get("mm_processor_kwargs") or {}
        reserved = upstream_placeholder_count(*image.size)
        made = upstream_processor(*image.size, **kwargs).num_tokens
        if made != reserved:
            raise RuntimeError(f"Attempted to assign {made} multimodal tokens to {reserved} placeholders")
        before, after = text.split("<image>")
        prompt_ids = [BOS_ID, *range(10, 10 + len(before)), *[IMAGE_TOKEN_ID] * reserved,
                      *range(10, 10 + len(after))]
        rgb = image.convert("RGB")
        words = f"page {image.width}x{image.height} rgb({','.join(map(str, rgb.getpixel((0, 0))))})"
        words = words.split(" ")
        finish = "stop"
        if "LOOP" in text:
            words, finish = ["la"] * params.max_tokens, "length"
        wait = int(re.search(r"WAIT=(\d+)", text).group(1)) if "WAIT=" in text else 0
        ids = [7 if w == "la" else 1000 + i for i, w in enumerate(words)]
        self.added.append((request_id, prompt, params))
        self.running[request_id] = _Running(prompt_ids, params, words, ids, finish, wait,
                                            die="DIE" in text)
        self.max_running = max(self.max_running, len(self.running))
        return request_id

    def has_unfinished_requests(self) -> bool:
        return bool(self.running)

    def abort_request(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self.aborted.append(rid)
            self.running.pop(rid, None)

    def step(self) -> list[RequestOutput]:
        if self.gate is not None:
            self.gate.wait(timeout=5)
        if self.step_delay:
            time.sleep(self.step_delay)
        self.steps += 1
        outputs = []
        for rid, run in list(self.running.items()):
            if run.die:
                raise RuntimeError("EngineDeadError: the engine core died")
            if run.wait:
                run.wait -= 1
                continue
            run.sent += 1
            finished = run.sent >= len(run.words)
            kind = run.params.output_kind
            if kind == RequestOutputKind.FINAL_ONLY and not finished:
                continue
            start = run.sent - 1 if kind == RequestOutputKind.DELTA else 0
            words = run.words[start : run.sent]
            text = (" " if start else "") + " ".join(words)
            completion = CompletionOutput(0, text, run.ids[start : run.sent],
                                          run.finish if finished else None)
            outputs.append(RequestOutput(rid, run.prompt_ids, [completion], finished))
            if finished:
                del self.running[rid]
        return outputs


class FakeLLM:
    def __init__(self, model: str, **kwargs):
        self.model, self.kwargs = model, kwargs
        self.llm_engine = FakeLLMEngine()


class NGramPerReqLogitsProcessor:
    pass


def install(monkeypatch, version: str = "0.11.1") -> types.ModuleType:
    """Put the stand-in in `sys.modules` as `vllm` (undone by `monkeypatch`)."""
    vllm = types.ModuleType("vllm")
    vllm.__version__ = version
    vllm.LLM, vllm.SamplingParams = FakeLLM, SamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams, sampling.RequestOutputKind = SamplingParams, RequestOutputKind
    ocr = types.ModuleType("vllm.model_executor.models.deepseek_ocr")
    ocr.NGramPerReqLogitsProcessor = NGramPerReqLogitsProcessor
    modules = {
        "vllm": vllm, "vllm.sampling_params": sampling,
        "vllm.model_executor": types.ModuleType("vllm.model_executor"),
        "vllm.model_executor.models": types.ModuleType("vllm.model_executor.models"),
        "vllm.model_executor.models.deepseek_ocr": ocr,
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return vllm


def page_image(size=(64, 48), colour=(255, 255, 255)) -> Image.Image:
    return Image.new("RGB", size, colour)
