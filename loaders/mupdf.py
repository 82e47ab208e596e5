"""pymupdf, imported without its layout model and without pymupdf4llm.

pymupdf 2 requires the pymupdf-layout and pymupdf4llm packages and imports both from its own
`__init__`: `pymupdf.layout` loads an ONNX document-layout model (onnxruntime), pymupdf4llm
onnxruntime, psutil and tqdm. Together about a second, two on a cold 2-core machine, before
the first page is touched. The loaders use neither: tables come from
`find_tables(use_layout=False)`, text from the text layer. So the first import of pymupdf
goes through here, with both held out of that one import.

Nothing is disabled for good. `import pymupdf.layout` (before or after this module) turns the
layout model on as usual; `pymupdf.Document.to_markdown` and pymupdf's other pymupdf4llm
shortcuts import pymupdf4llm on their first call. When pymupdf was imported before this
module, it is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

_HELD_OUT = ("pymupdf.layout", "pymupdf4llm")


class _Pymupdf4llmOnFirstUse:
    """Stands in for the pymupdf4llm module in pymupdf's namespace until first used."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module("pymupdf4llm")
        sys.modules["pymupdf"].pymupdf4llm = module
        return getattr(module, name)


def _import_pymupdf() -> Any:
    if "pymupdf" in sys.modules or any(name in sys.modules for name in _HELD_OUT):
        import pymupdf

        return pymupdf
    for name in _HELD_OUT:
        sys.modules[name] = None  # its import raises ImportError, which pymupdf skips
    try:
        import pymupdf
    finally:
        for name in _HELD_OUT:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    has_4llm = importlib.util.find_spec("pymupdf4llm") is not None
    if has_4llm and getattr(pymupdf, "pymupdf4llm", 0) is None:
        pymupdf.pymupdf4llm = _Pymupdf4llmOnFirstUse()
    return pymupdf


pymupdf = _import_pymupdf()
