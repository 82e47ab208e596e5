"""The resolution modes of DeepSeek-OCR (five) and of DeepSeek-OCR-2 (three), as data.

A mode says how big the global view is, whether the page is also cut into local tiles, and
how the global view is made: squashed to a square (`resize`, tiny and small) or scaled to fit
and padded with the mean colour (base, large, gundam). The sizes are those of the released
inference code (DeepSeek-OCR `modeling_deepseekocr.py` and its vLLM `config.py`):

| mode   | global view | tiles          |
|--------|-------------|----------------|
| tiny   | 512, resize | none           |
| small  | 640, resize | none           |
| base   | 1024, pad   | none           |
| large  | 1280, pad   | none           |
| gundam | 1024, pad   | n x 640 (2..6) |

DeepSeek-OCR-2's DeepEncoder V2 has learned queries for 768- and 1024-px views only, so its
released code defines three ways to run (`infer(base_size, image_size, crop_mode)` of
`modeling_deepseekocr2.py`, and its vLLM `config.py`: BASE_SIZE 1024, IMAGE_SIZE 768,
CROP_MODE True, 2..6 tiles):

| mode   | global view | tiles          | vision tokens       | released call              |
|--------|-------------|----------------|---------------------|----------------------------|
| small  | 768, resize | none           | 144 + 1             | crop_mode=False, image 768 |
| base   | 1024, pad   | none           | 256 + 1             | crop_mode=False, image 1024|
| gundam | 1024, pad   | n x 768 (2..6) | 256 + 144 n + 1     | crop_mode=True (default)   |

Pages no larger than one tile (768 x 768) get no tiles in gundam mode. There is no tiny or
large mode for DeepSeek-OCR-2 (512 and 1280 px views have no learned queries).

This module knows nothing about pixels or tokens; see `preprocess.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core_model.config import DEEPSEEK_OCR, DEEPSEEK_OCR_2


@dataclass(frozen=True)
class Mode:
    """One resolution mode.

    Attributes:
        name: The mode's name ("tiny", "small", "base", "large", "gundam").
        base_size: Side of the square global view, in pixels.
        image_size: Side of one local tile (equal to `base_size` when there are no tiles).
        crop: Whether pages larger than one tile are also cut into local tiles.
        resize: True: the global view is the page squashed to a square, ignoring its aspect
            ratio. False: the page is scaled to fit and padded with the mean colour.
    """

    name: str
    base_size: int
    image_size: int
    crop: bool
    resize: bool


TINY = Mode("tiny", base_size=512, image_size=512, crop=False, resize=True)
SMALL = Mode("small", base_size=640, image_size=640, crop=False, resize=True)
BASE = Mode("base", base_size=1024, image_size=1024, crop=False, resize=False)
LARGE = Mode("large", base_size=1280, image_size=1280, crop=False, resize=False)
GUNDAM = Mode("gundam", base_size=1024, image_size=640, crop=True, resize=False)

MODES: dict[str, Mode] = {m.name: m for m in (TINY, SMALL, BASE, LARGE, GUNDAM)}

OCR2_SMALL = Mode("small", base_size=768, image_size=768, crop=False, resize=True)
OCR2_BASE = Mode("base", base_size=1024, image_size=1024, crop=False, resize=False)
OCR2_GUNDAM = Mode("gundam", base_size=1024, image_size=768, crop=True, resize=False)

OCR2_MODES: dict[str, Mode] = {m.name: m for m in (OCR2_SMALL, OCR2_BASE, OCR2_GUNDAM)}

MODES_BY_FAMILY: dict[str, dict[str, Mode]] = {DEEPSEEK_OCR: MODES, DEEPSEEK_OCR_2: OCR2_MODES}


def get_mode(mode: str | Mode, family: str = DEEPSEEK_OCR) -> Mode:
    """Return the mode named `mode` (case-insensitive) of a model family; a `Mode` is
    returned as is.

    Args:
        mode: A mode name or a `Mode`.
        family: "deepseek-ocr" (default) or "deepseek-ocr-2" (`core_model.config.FAMILIES`).

    Raises:
        ValueError: For a name the family does not define; the message lists its modes.
    """
    if isinstance(mode, Mode):
        return mode
    modes = MODES_BY_FAMILY.get(family)
    if modes is None:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(MODES_BY_FAMILY)}")
    found = modes.get(str(mode).strip().lower())
    if found is None:
        raise ValueError(f"unknown mode {mode!r} for {family}; its modes: {', '.join(modes)}")
    return found
