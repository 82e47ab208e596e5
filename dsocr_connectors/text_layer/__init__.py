"""Born-digital pages without a model: the PDF text layer -> the same `Page` the model gives.

pymupdf already knows the text, fonts and ruled tables of a born-digital PDF page; this
package turns that into blocks of the document model, so a text-layer page and a model-read
page look alike downstream (same block types, same labels as the model emits, same 0..999
boxes). `page.py` has the steps; it knows nothing of engines or the pipeline.
"""

from dsocr_connectors.text_layer.page import (
    ENGINE_NAME,
    TextLayerEngine,
    has_text,
    page_from_text_layer,
    to_grid,
)
from dsocr_connectors.text_layer.tables import layer_table_to_table

__all__ = [
    "ENGINE_NAME",
    "TextLayerEngine",
    "has_text",
    "layer_table_to_table",
    "page_from_text_layer",
    "to_grid",
]
