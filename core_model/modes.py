"""The five resolution modes of DeepSeek-OCR, as data.

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

This module knows nothing about pixels or tokens; see `preprocess.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def get_mode(mode: str | Mode) -> Mode:
    """Return the mode named `mode` (case-insensitive); a `Mode` is returned as is.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    if isinstance(mode, Mode):
        return mode
    found = MODES.get(str(mode).strip().lower())
    if found is None:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    return found
