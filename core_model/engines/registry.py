"""Engines by name: `load_engine("native" | "vllm" | "openai", **kwargs)`.

Each engine module is imported only when that engine is asked for, so `vllm` (and the
native model code) cost nothing to a user of another engine. Other layers may add engines
with `register_engine` (the pipeline adds its text-layer engine this way).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from importlib import metadata
from typing import Any

from core_model.engines.interface import Engine
from core_model.torch_status import INSTALL_HINT, gpu_build, require_torch, torch_version

EngineFactory = Callable[..., Engine]


def _load_native(model: str | None = None, **kwargs: Any) -> Engine:
    if model is None:
        raise ValueError("the native engine needs model=<checkpoint directory>")
    require_torch("the native engine")
    from core_model.engines.native import NativeEngine

    return NativeEngine.from_pretrained(model, **kwargs)


def _load_vllm(**kwargs: Any) -> Engine:
    from core_model.engines.vllm_engine import VllmEngine

    return VllmEngine(**kwargs)


def _load_openai(**kwargs: Any) -> Engine:
    if importlib.util.find_spec("httpx") is None:
        raise ImportError("the openai engine needs httpx: pip install 'dsocr-connectors[openai]'")
    from core_model.engines.openai_engine import OpenAIEngine

    return OpenAIEngine(**kwargs)


def _native_status() -> str:
    version = torch_version()  # not imported: `dsocr info` asks torch for devices if useful
    if version is None:
        return f"unavailable: torch is not installed ({INSTALL_HINT})"
    return f"available: torch {version}, {gpu_build() or 'CPU build (slow)'}"


def _vllm_status() -> str:
    if importlib.util.find_spec("vllm") is None:
        return "unavailable: vllm is not installed (pip install 'dsocr-connectors[vllm]')"
    from core_model.engines.vllm_protocol import FIRST_VLLM, version_warning

    version = metadata.version("vllm")
    warning = version_warning(version)
    if warning and "no DeepSeek-OCR support" in warning:
        return f"unavailable: {warning}"
    first = ".".join(map(str, FIRST_VLLM))
    note = f"; {warning}" if warning else f" (DeepSeek-OCR since {first})"
    return f"available: vllm {version}{note}; gundam mode only"


def _openai_status() -> str:
    if importlib.util.find_spec("httpx") is None:
        return "unavailable: httpx is not installed (pip install 'dsocr-connectors[openai]')"
    where = os.environ.get("OPENAI_BASE_URL")
    server = f"$OPENAI_BASE_URL={where}" if where else "base_url (or $OPENAI_BASE_URL)"
    return (
        f"available: httpx {metadata.version('httpx')}; needs {server} of a running "
        "OpenAI-compatible server (vllm serve: gundam mode only)"
    )


_ENGINES: dict[str, tuple[EngineFactory, Callable[[], str]]] = {
    "native": (_load_native, _native_status),
    "vllm": (_load_vllm, _vllm_status),
    "openai": (_load_openai, _openai_status),
}


def register_engine(name: str, factory: EngineFactory, status: Callable[[], str]) -> None:
    """Make `load_engine(name, **kwargs)` call `factory(**kwargs)`.

    Args:
        name: engine name, lower case.
        factory: builds the engine from keyword arguments.
        status: returns "available: ..." or "unavailable: <why>" for `available_engines`.
    """
    _ENGINES[name.lower()] = (factory, status)


def load_engine(name: str, **kwargs: Any) -> Engine:
    """Build an engine by name.

    Keyword arguments whose value is None are dropped, so callers can pass one uniform set
    (`device=None`, `dtype=None`) and each engine keeps its own defaults.

    Args:
        name: "native" (kwargs: model, device, dtype, max_batch_size, max_new_tokens),
            "vllm" (model, max_new_tokens, max_batch_size, ...; see `VllmEngine`),
            "openai" (base_url, model, api_key, timeout, max_concurrency, ...; see
            `OpenAIEngine`), or a
            registered name.
        **kwargs: passed to the engine's constructor.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    key = name.lower()
    if key not in _ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(sorted(_ENGINES))}")
    factory, _ = _ENGINES[key]
    return factory(**{k: v for k, v in kwargs.items() if v is not None})


def available_engines() -> dict[str, str]:
    """Each engine name -> "available: ..." or "unavailable: <why>" (used by `dsocr info`)."""
    report = {}
    for name, (_, status) in _ENGINES.items():
        try:
            report[name] = status()
        except Exception as exc:  # a broken optional install must not break `dsocr info`
            report[name] = f"unavailable: {type(exc).__name__}: {exc}"
    return report
