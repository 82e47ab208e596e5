"""A model-read page checked against the PDF's own text: the layer's exact characters where
the two agree, a record of how far they do, and flags where they contradict each other.

`reconcile_page(page, layer)` is the pure function; `check_with_text_layer(page, loaded)`
is what the pipeline calls on every finished page. `page.py` has the geometry, `compare.py`
the alignment of one block's text, `markup.py` what in a block's content is text.
"""

from dsocr_connectors.reconcile.compare import Comparison, compare
from dsocr_connectors.reconcile.page import check_with_text_layer, reconcile_page

__all__ = ["Comparison", "check_with_text_layer", "compare", "reconcile_page"]
