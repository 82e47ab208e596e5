"""Engines behind one interface (see `interface.py`)."""

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    MODES,
    Engine,
    FinishReason,
    PageRequest,
    PageResult,
    TokenCallback,
)

__all__ = [
    "GROUNDING_MARKDOWN_PROMPT",
    "MODES",
    "Engine",
    "FinishReason",
    "PageRequest",
    "PageResult",
    "TokenCallback",
]
