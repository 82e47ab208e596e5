"""pymupdf, imported without switching on its layout model.

pymupdf 2 imports `pymupdf.layout` on its own import when that package is installed (it
comes with pymupdf from PyPI), which loads an ONNX layout model: about a second before the
first page, for a model nothing here uses (tables are found with `use_layout=False`, the
text path has its own layout). The first import of pymupdf in a process goes through here
with that sub-import held off; `import pymupdf.layout` (or pymupdf4llm) still switches it
on afterwards for code that wants it.
"""

from __future__ import annotations

import sys

if "pymupdf" not in sys.modules and "pymupdf.layout" not in sys.modules:
    sys.modules["pymupdf.layout"] = None  # type: ignore[assignment]  # ImportError for it
    try:
        import pymupdf
    finally:
        del sys.modules["pymupdf.layout"]
else:
    import pymupdf

__all__ = ["pymupdf"]
