"""Figure crops for the connectors: PNG images of a document's figure blocks.

The Converter frees each page image once the page is read, so the crops are cut from a
second rendering of only the pages that hold figures (144 dpi, as `dsocr convert` writes
its crops; an image input is used as it is), with the same cropping as the output folder
(`dsocr_connectors.export.preview.figure_crop`). The source must still be readable: a
path, or the bytes the connector read.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr_connectors.document import BlockType, Document
from dsocr_connectors.export.markdown import figure_crop_name

FIGURE_DPI = 144
MIMETYPE = "image/png"


@dataclass
class FigureCrop:
    """The crop of one figure block: PNG bytes and, once saved, where."""

    page: int
    block: int
    png: bytes
    width: int
    height: int
    path: str | None = None

    def base64(self) -> str:
        """The PNG as base64 text (what `ImageNode.image` and `image_base64` hold)."""
        return base64.b64encode(self.png).decode("ascii")


def has_figures(doc: Document) -> bool:
    return any(b.type is BlockType.FIGURE and b.boxes for p in doc.pages for b in p.blocks)


def figure_crops(doc: Document, source: Any, *, dpi: int = FIGURE_DPI,
                 password: str | None = None) -> dict[tuple[int, int], FigureCrop]:
    """Crop every figure block of `doc` out of a fresh rendering of its page.

    Args:
        doc: the converted document.
        source: what it was converted from (a path or bytes).
        dpi: the rendering resolution of PDF pages.
        password: for encrypted PDFs.

    Returns:
        (page number, block index) -> crop. A page that cannot be rendered again gives no
        crops (its figures keep their boxes and captions).
    """
    import loaders
    from dsocr_connectors.export.preview import figure_crop

    wanted = {p.number: p for p in doc.pages
              if any(b.type is BlockType.FIGURE and b.boxes for b in p.blocks)}
    crops: dict[tuple[int, int], FigureCrop] = {}
    if not wanted:
        return crops
    for loaded in loaders.iter_pages(source, dpi=dpi, pages=sorted(wanted), password=password,
                                     text_layer=False, extract_tables=False):
        page = wanted.get(loaded.number)
        if page is None or loaded.image is None:
            continue
        for block in page.blocks:
            image = figure_crop(block, loaded.image) if block.type is BlockType.FIGURE else None
            if image is None:
                continue
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG", optimize=True)
            crops[(page.number, block.index)] = FigureCrop(
                page.number, block.index, out.getvalue(), image.width, image.height)
        loaded.image = None
    return crops


def save_crops(doc: Document, crops: dict[tuple[int, int], FigureCrop], folder: str | Path,
               stem: str) -> None:
    """Write the crops to `folder/stem/page-NNNN-block-NNN.png` and set their paths (and
    each figure's `Figure.crop_path`, so the Markdown links them)."""
    from dsocr_connectors.document import Figure

    out = Path(folder) / stem
    out.mkdir(parents=True, exist_ok=True)
    for page in doc.pages:
        for block in page.blocks:
            crop = crops.get((page.number, block.index))
            if crop is None:
                continue
            path = out / figure_crop_name(page, block)
            path.write_bytes(crop.png)
            crop.path = str(path)
            if block.figure is None:
                block.figure = Figure()
            block.figure.crop_path = crop.path
