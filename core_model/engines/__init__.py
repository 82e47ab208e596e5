"""Engines behind one interface (see `interface.py`); `load_engine` builds one by name."""

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    MODES,
    Engine,
    FinishReason,
    PageRequest,
    PageResult,
    TokenCallback,
)
from core_model.engines.registry import available_engines, load_engine, register_engine

__all__ = [
    "GROUNDING_MARKDOWN_PROMPT",
    "MODES",
    "Engine",
    "FinishReason",
    "PageRequest",
    "PageResult",
    "TokenCallback",
    "available_engines",
    "load_engine",
    "register_engine",
]
