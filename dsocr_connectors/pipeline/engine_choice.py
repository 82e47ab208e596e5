"""Which engine reads the pages: an object, a name, a `module:attr` plug-in, or none.

- an object with `generate` (the `Engine` protocol) or `read_page` (the text-layer engine)
  is used as given;
- `"text-layer"`: no model, PDF text layers only;
- `"module:attr"`: a custom engine. `attr` (dots allowed) is either an engine object or a
  factory (a class or a function) called with the keyword arguments that are set among `model`,
  `device` and `max_new_tokens`, plus `engine_options` (so a factory should accept `**kwargs`);
- any other name (`"native"`, `"vllm"`, `"openai"`) goes to `core_model.engines.load_engine`,
  with `engine_options` added to its keyword arguments (e.g. `{"base_url": ..., "api_key": ...}`
  for "openai");
- `None`: the native engine when a model is configured, else no engine at all (pages are
  read from their text layer where they have one, see `Converter`).

With `process=True` (or None, the default, for the native engine on a CUDA device), a named
or `module:attr` engine is loaded in a process of its own (`core_model.engines.engine_process`):
its thread, which launches the GPU's work, then shares no GIL with loading, streaming and
finishing pages (in one process the `Converter` got 73-77% of the engine's rate in Base on an
H200). An engine object given is used where it is.

An engine sizes its own batch (its slots, its HTTP concurrency): the converter's cap on pages
in flight is not passed to it; the converter reads the engine's `concurrency` instead.
"""

from __future__ import annotations

import importlib
from typing import Any

from dsocr_connectors.text_layer import ENGINE_NAME as TEXT_LAYER
from dsocr_connectors.text_layer import TextLayerEngine


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot be loaded; the message says which and why."""


def is_text_layer(engine: Any) -> bool:
    return engine is not None and getattr(engine, "name", None) == TEXT_LAYER


def resolve_engine(
    engine: Any,
    *,
    model: str | None = None,
    device: str | None = None,
    max_new_tokens: int | None = None,
    engine_options: dict[str, Any] | None = None,
    process: bool | None = None,
) -> Any:
    """Turn `Converter`'s `engine`/`model` arguments into an engine object or None.

    `process`: load a named engine in a process of its own (True), never (False), or for the
    native engine on a CUDA device (None; `wants_process`).

    Raises:
        EngineUnavailable: an unknown name, a plug-in that does not import, an engine whose
            dependencies or model are missing.
    """
    if engine is None:
        if model is None:
            return None
        engine = "native"
    if not isinstance(engine, str):
        if process:
            raise ValueError("process=True needs an engine name (or none), not an engine object")
        if hasattr(engine, "generate") or hasattr(engine, "read_page"):
            return engine
        raise EngineUnavailable(f"{engine!r} is not an engine (no generate or read_page method)")
    options = {
        key: value
        for key, value in (
            ("model", model), ("device", device), ("max_new_tokens", max_new_tokens),
        )
        if value is not None
    }
    options.update(engine_options or {})
    if engine == TEXT_LAYER:
        return TextLayerEngine()
    if wants_process(process, engine, device):
        return _in_process_of_its_own(engine, options)
    if ":" in engine:
        return _plugin(engine, options)
    from core_model.engines import load_engine

    try:
        return load_engine(engine, **options)
    except Exception as exc:
        raise EngineUnavailable(f"engine {engine!r} could not be loaded: {exc}") from exc


def wants_process(process: bool | None, engine: str, device: str | None) -> bool:
    """Whether the engine named `engine` goes in a process of its own: as `process` says, or
    by default (None) the native engine when it will run on CUDA (`device`, or the default
    device when None) on a POSIX system."""
    from core_model.engines import engine_process

    if process is not None:
        return process
    if engine != "native" or not engine_process.available():
        return False
    if device is not None:
        return device.startswith("cuda")
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _in_process_of_its_own(engine: str, options: dict[str, Any]) -> Any:
    from core_model.engines.engine_process import EngineProcess, EngineStartError

    try:
        return EngineProcess(engine, **options)
    except EngineStartError as exc:
        raise EngineUnavailable(str(exc)) from exc


def _plugin(spec: str, options: dict[str, Any]) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise EngineUnavailable(f"engine {spec!r}: {exc}") from exc
    is_class = isinstance(target, type)
    if not is_class and (hasattr(target, "generate") or hasattr(target, "read_page")):
        return target
    if not callable(target):
        raise EngineUnavailable(f"engine {spec!r} is neither an engine nor a factory")
    try:
        made = target(**options)
    except Exception as exc:
        raise EngineUnavailable(f"engine {spec!r} could not be made: {exc}") from exc
    if not (hasattr(made, "generate") or hasattr(made, "read_page")):
        raise EngineUnavailable(f"engine {spec!r} made {made!r}, which is not an engine")
    return made
