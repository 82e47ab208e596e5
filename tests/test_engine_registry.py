"""Engines by name: lazy loading, None-dropping, availability report."""

from __future__ import annotations

import importlib.util

import pytest

from core_model.engines import available_engines, load_engine, register_engine, registry
from core_model.engines.interface import PageResult


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    """Engines registered by a test do not leak into other tests."""
    monkeypatch.setattr(registry, "_ENGINES", dict(registry._ENGINES))


class EchoEngine:
    name = "echo"

    def __init__(self, greeting: str = "hi"):
        self.greeting = greeting

    def generate(self, requests, *, on_token=None):
        return [PageResult(text=self.greeting) for _ in requests]


def test_unknown_engine_lists_known_names():
    with pytest.raises(ValueError, match="known: .*native.*openai.*vllm"):
        load_engine("tesseract")


def test_registered_engine_and_none_kwargs_are_dropped():
    register_engine("echo", EchoEngine, lambda: "available: always")
    engine = load_engine("ECHO", greeting=None)
    assert engine.greeting == "hi"
    assert load_engine("echo", greeting="yo").greeting == "yo"
    assert available_engines()["echo"] == "available: always"


def test_openai_engine_by_name():
    engine = load_engine("openai", base_url="http://127.0.0.1:9/v1", model="m", device=None,
                         max_batch_size=8)  # sizing arguments of the pipeline are accepted
    assert engine.name == "openai" and engine.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("version", "status"), [
    ("0.10.2", "unavailable: vllm 0.10.2 has no DeepSeek-OCR support (needs vllm >=0.11.1)"),
    ("0.20.0", "available: vllm 0.20.0 (DeepSeek-OCR since 0.11.1); gundam mode only"),
    ("0.35.1", "available: vllm 0.35.1; vllm 0.35.1 is newer than the releases checked"),
])
def test_vllm_status_says_the_version_and_the_modes(monkeypatch, version, status):
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(registry.metadata, "version", lambda name: version)
    assert available_engines()["vllm"].startswith(status)


def test_native_needs_a_model_directory():
    with pytest.raises(ValueError, match="model="):
        load_engine("native")


def test_available_engines_reports_each_with_a_reason():
    report = available_engines()
    assert {"native", "vllm", "openai"} <= set(report)
    for status in report.values():
        assert status.startswith(("available: ", "unavailable: "))
    if importlib.util.find_spec("vllm") is None:
        assert report["vllm"].startswith("unavailable: vllm is not installed")


def test_a_broken_status_check_is_reported_not_raised():
    def broken():
        raise RuntimeError("driver mismatch")

    register_engine("broken", EchoEngine, broken)
    assert available_engines()["broken"] == "unavailable: RuntimeError: driver mismatch"
