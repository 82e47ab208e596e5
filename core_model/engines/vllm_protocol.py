"""What vLLM's DeepSeek-OCR support takes and gives back, shared by the vLLM engine and the
OpenAI-compatible engine (a `vllm serve` behind HTTP). Plain Python; vllm is not imported.

## Which resolution modes vLLM serves: gundam only

Read from vLLM's sources, releases 0.11.1 (the first with DeepSeek-OCR) to 0.33.0
(`vllm/model_executor/models/deepseek_ocr.py`, `vllm/transformers_utils/processors/
deepseek_ocr.py`; read at 0.11.1, 0.12.0, 0.14.1, 0.17.0, 0.18.0, 0.19.0, 0.20.0, 0.21.0,
0.22.0, 0.26.0, 0.30.0 and 0.33.0):

- The number of `<image>` positions vLLM reserves in the prompt comes from
  `DeepseekOCRProcessingInfo.get_num_image_tokens`, called with the module constants
  `BASE_SIZE = 1024`, `IMAGE_SIZE = 640` and `cropping=CROP_MODE` (True) in every release:
  the Gundam count (16 x 17 + 1 = 273, plus (10 x columns + 1) x 10 x rows for a page larger
  than 640 on a side), whatever the request says.
- Per-request `mm_processor_kwargs` do reach the HF processor: `crop_mode` from 0.11.1;
  `base_size`/`image_size` only from 0.19.0 (0.17 and 0.18 override them with the
  constants; 0.14 and older processors read only the constants). The processor also
  squashes the global view to `image_size` whenever `crop_mode` is False (the release pads
  base and large instead).
- So any other mode gives vision features whose count differs from the reserved positions
  (tiny 73, small 111, large 421 against at least 273; base 273 against 273 + tiles on a
  page larger than 640): vLLM rejects the request, or in the one case where the counts meet
  (base on a page of at most 640 x 640) it reads a squashed page instead of a padded one.

Both engines therefore send Gundam pages exactly as vLLM's defaults read them (no
`mm_processor_kwargs`) and refuse pages in another mode with `UnsupportedMode`, naming the
engines that serve it. A server that honours `mm_processor_kwargs` for every mode can be
declared to the OpenAI engine (`served_modes=MODES`); it then gets the mode's kwargs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from core_model.engines.interface import MODES, FinishReason
from core_model.engines.loop_detect import LoopDetector

IMAGE_TOKEN_ID = 128815
EOS_TEXT = "<｜end▁of▁sentence｜>"
DEFAULT_MAX_NEW_TOKENS = 8192

# The vLLM releases whose DeepSeek-OCR code was read (see the module docstring); the `vllm`
# extra of pyproject.toml pins the same range.
SUPPORTED_VLLM = (">=0.11.1", "<0.34")
FIRST_VLLM, LAST_VLLM_READ = (0, 11, 1), (0, 33, 0)
VLLM_MODES = ("gundam",)

# mode -> DeepSeek-OCR processor knobs, as listed in DeepSeek's vLLM config.py.
MODE_PROCESSOR_KWARGS: dict[str, dict[str, Any]] = {
    "tiny": {"base_size": 512, "image_size": 512, "crop_mode": False},
    "small": {"base_size": 640, "image_size": 640, "crop_mode": False},
    "base": {"base_size": 1024, "image_size": 1024, "crop_mode": False},
    "large": {"base_size": 1280, "image_size": 1280, "crop_mode": False},
    "gundam": {"base_size": 1024, "image_size": 640, "crop_mode": True},
}

_FINISH_REASONS: dict[str | None, FinishReason] = {"stop": "eos", "length": "length"}


class UnsupportedMode(ValueError):
    """The engine's server cannot read a page in this resolution mode faithfully."""


def mode_processor_kwargs(mode: str) -> dict[str, Any]:
    """The `mm_processor_kwargs` for a resolution mode (case-insensitive).

    Raises:
        ValueError: unknown mode (the message lists the known ones).
    """
    key = mode.lower()
    if key not in MODE_PROCESSOR_KWARGS:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODE_PROCESSOR_KWARGS)}")
    return dict(MODE_PROCESSOR_KWARGS[key])


def check_mode(mode: str, served: Iterable[str], *, engine: str) -> str:
    """The mode's lower-case name when `served` holds it.

    Raises:
        ValueError: unknown mode.
        UnsupportedMode: a known mode the server cannot read faithfully (the message says
            which modes it serves and which engine serves the others).
    """
    key = mode.lower()
    if key not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    served = tuple(served)
    if key not in served:
        raise UnsupportedMode(
            f"the {engine} engine cannot read pages in the {key!r} mode: its server serves "
            f"only {', '.join(served)} (vLLM's DeepSeek-OCR processor reserves the gundam "
            "token count for every page, whatever mode is asked); use mode='gundam', or the "
            "native engine for tiny/small/base/large"
        )
    return key


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


def strip_eos(text: str) -> str:
    """The text without a trailing end-of-sentence token, if the server kept it."""
    return text[: -len(EOS_TEXT)] if text.endswith(EOS_TEXT) else text


def count_image_tokens(prompt_token_ids: Iterable[int]) -> int:
    """`<image>` positions in a prompt vLLM built."""
    return sum(1 for t in prompt_token_ids if t == IMAGE_TOKEN_ID)


def version_warning(version: str) -> str | None:
    """A warning when `version` of vLLM is outside the releases read, else None."""
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    found = tuple(parts + [0] * (3 - len(parts)))
    if found < FIRST_VLLM:
        return f"vllm {version} has no DeepSeek-OCR support (needs vllm {SUPPORTED_VLLM[0]})"
    if found > LAST_VLLM_READ:
        return (
            f"vllm {version} is newer than the releases checked ({'.'.join(map(str, LAST_VLLM_READ))}"
            " and older); gundam pages are expected to work, other modes stay refused"
        )
    return None
