"""`dsocr serve`: the model and the converter behind an HTTP API (the `serve` extra).

`create_app(engine, options)` builds the FastAPI app around one engine shared by every
client; `dsocr serve` runs it with uvicorn. See docs/serve.md.
"""

from dsocr_connectors.serve.app import create_app
from dsocr_connectors.serve.options import ServeOptions

__all__ = ["ServeOptions", "create_app"]
