"""DeepSeek-OCR documents as `unstructured` elements (`partition_pdf`-style output).

`to_elements(doc)` maps each block of a `Document`, in reading order, to one element:

| `BlockType` | element |
|---|---|
| title, section_heading | `Title` (`category_depth` = heading level - 1) |
| text, table_footnote, figure_footnote | `NarrativeText`, or `Text` when very short |
| list_item | `ListItem` (bullet removed) |
| table | `Table` (`text_as_html` = `Table.to_html()`, text = the cells row by row) |
| table_caption, figure_caption | `FigureCaption` |
| figure | `Image` (text: content, description, chart data, SMILES; `image_path` = crop; with `extract_image_block_to_payload`, `image_base64` and `image_mime_type`) |
| equation | `Formula` (the LaTeX) |
| header, footer, page_number | `Header`, `Footer`, `PageNumber` |
| line, unknown | `Text` (an unknown block holding a table: `Table`) |

Metadata: `page_number`, `filename`/`file_directory`/`filetype` from the source,
`coordinates` (the union of the block's boxes: `PixelSpace` of the page image when its size
is known, else `RelativeCoordinateSystem`), `parent_id` (the innermost heading above, across
pages), and one ad-hoc key `dsocr` (unstructured keeps unknown metadata fields through
`to_dict`/`from_dict`) with what unstructured has no field for: block type, model label,
block index, boxes on the 0..999 grid, page status and flags, chart data, SMILES.
Element ids are stable: a hash of source, page number and block index.

`unstructured` is imported here only; `import dsocr_connectors` does not import it.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import re
from typing import Any

from dsocr_connectors.document import Block, BlockType, Document, Page
from dsocr_connectors.metadata import page_label
from splitters.render import CENTER_TAGS, block_text, heading_level, heading_text

try:
    from unstructured.documents import elements as el
    from unstructured.documents.coordinates import PixelSpace, RelativeCoordinateSystem
    from unstructured.documents.elements import CoordinatesMetadata, Element, ElementMetadata
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "dsocr_connectors.unstructured needs unstructured: "
        "pip install 'dsocr-connectors[unstructured]'"
    ) from error

log = logging.getLogger(__name__)

PAYLOAD_KEY = "dsocr"
MIN_NARRATIVE_WORDS = 3  # fewer words than this, or no lowercase word: `Text`, not narrative

_ELEMENT_TYPES: dict[BlockType, type[el.Text]] = {
    BlockType.TITLE: el.Title,
    BlockType.SECTION_HEADING: el.Title,
    BlockType.LIST_ITEM: el.ListItem,
    BlockType.TABLE: el.Table,
    BlockType.TABLE_CAPTION: el.FigureCaption,
    BlockType.FIGURE_CAPTION: el.FigureCaption,
    BlockType.FIGURE: el.Image,
    BlockType.EQUATION: el.Formula,
    BlockType.HEADER: el.Header,
    BlockType.FOOTER: el.Footer,
    BlockType.PAGE_NUMBER: el.PageNumber,
    BlockType.LINE: el.Text,
    BlockType.UNKNOWN: el.Text,
}
_PROSE = (BlockType.TEXT, BlockType.TABLE_FOOTNOTE, BlockType.FIGURE_FOOTNOTE)
_FURNITURE = (el.Header, el.Footer, el.PageNumber)
_BULLET = re.compile(r"^\s*[-*+•·]\s+")


def element_id(source: str, page: int, key: int | str) -> str:
    """A stable element id: 32 hex digits of SHA-256 over source, page number and block index."""
    return hashlib.sha256(f"{source}\x00{page}\x00{key}".encode()).hexdigest()[:32]


def is_narrative(text: str) -> bool:
    """Prose rather than a label: at least `MIN_NARRATIVE_WORDS` words, one of them lowercase."""
    words = text.split()
    return len(words) >= MIN_NARRATIVE_WORDS and any(w.isalpha() and w.islower() for w in words)


def table_text(block: Block) -> str:
    """A table's cells as text, one line per row (each spanned cell once)."""
    if block.table is None:
        return CENTER_TAGS.sub("", block.content).strip()
    rows = block.table.grid(fill_spans=False)
    lines = (" ".join(c.strip() for c in row if c.strip()) for row in rows)
    return "\n".join(line for line in lines if line)


def figure_text(block: Block) -> str:
    """What a figure says in words: its content, description, chart data and SMILES."""
    parts = [CENTER_TAGS.sub("", block.content).strip()]
    if block.figure is not None and block.figure.description:
        parts.append(block.figure.description.strip())
    if block.chart is not None:
        parts.append(block_text(block))  # the chart's title, units and data
    if block.chemistry is not None:
        parts.append(f"SMILES: {block.chemistry.canonical_smiles or block.chemistry.smiles}")
    return "\n".join(p for p in parts if p)


def element_type(block: Block) -> type[el.Text]:
    """The element class a block becomes (see the module docstring)."""
    if block.type in _PROSE:
        return el.NarrativeText if is_narrative(block.content) else el.Text
    if block.type == BlockType.UNKNOWN and block.table is not None:
        return el.Table
    return _ELEMENT_TYPES[block.type]


def element_text(block: Block, kind: type[el.Text]) -> str:
    """The element's text: heading words, cells, LaTeX, figure words, or the cleaned content."""
    if kind is el.Title:
        return heading_text(block)
    if kind is el.Table:
        return table_text(block)
    if kind is el.Image:
        return figure_text(block)
    if kind is el.Formula and block.equation is not None:
        return block.equation.latex.strip()
    text = CENTER_TAGS.sub("", block.content).strip()
    return _BULLET.sub("", text) if kind is el.ListItem else text


def coordinates(block: Block, page: Page) -> CoordinatesMetadata | None:
    """The union of the block's boxes as four corners (top-left, bottom-left, bottom-right,
    top-right): pixels of the page image (rounded to 0.1, as `elements_to_json` writes them)
    when its size is known, else relative 0..1 with y up (unstructured's
    `RelativeCoordinateSystem` is Cartesian), rounded to 4 places. None without boxes.
    """
    if not block.boxes:
        return None
    x1 = min(b.x1 for b in block.boxes) / 999
    y1 = min(b.y1 for b in block.boxes) / 999
    x2 = max(b.x2 for b in block.boxes) / 999
    y2 = max(b.y2 for b in block.boxes) / 999
    if page.image_width and page.image_height:
        w, h = page.image_width, page.image_height
        x1, x2, y1, y2 = x1 * w, x2 * w, y1 * h, y2 * h
        system: Any = PixelSpace(width=w, height=h)
        places = 1
    else:
        y1, y2 = 1 - y1, 1 - y2
        system = RelativeCoordinateSystem()
        places = 4
    x1, y1, x2, y2 = (round(v, places) for v in (x1, y1, x2, y2))
    points = ((x1, y1), (x1, y2), (x2, y2), (x2, y1))
    return CoordinatesMetadata(points=points, system=system)


def block_payload(block: Block, page: Page) -> dict[str, Any]:
    """The `dsocr` metadata value: what unstructured has no field for."""
    payload: dict[str, Any] = {
        "block_type": block.type.value,
        "label": block.label,
        "block_index": block.index,
        "boxes": [[b.x1, b.y1, b.x2, b.y2] for b in block.boxes],
        "page_label": page_label(page, page.number),
        "page_status": page.status.value,
        "page_flags": list(page.flags),
        "flags": list(block.flags),
    }
    if block.heading_level is not None:
        payload["heading_level"] = block.heading_level
    if block.equation is not None:
        payload["display"] = block.equation.display
    if block.chart is not None:
        payload["chart"] = block.chart.model_dump(mode="json", exclude={"source_text"})
    if block.chemistry is not None:
        payload["chemistry"] = block.chemistry.model_dump(mode="json")
    return payload


def _source_metadata(source: str) -> dict[str, Any]:
    directory, name = os.path.split(source)
    return {"filename": name or None, "file_directory": directory or None,
            "filetype": mimetypes.guess_type(name)[0] if name else None}


def to_elements(doc: Document, *, include_page_breaks: bool = False,
                images: dict[tuple[int, int], Any] | None = None) -> list[Element]:
    """The document's blocks as unstructured elements, one per block in reading order.

    Args:
        doc: a converted (or re-read) document.
        include_page_breaks: put a `PageBreak` element between pages, as `partition_pdf` does.
        images: figure crops by (page number, block index)
            (`dsocr_connectors.figures.figure_crops`): their `Image` elements get
            `image_base64` and `image_mime_type`, as `partition_pdf` writes them with
            `extract_image_block_to_payload=True`.

    Returns:
        The elements. A page without blocks (a failed page) gives none and is logged as a
        warning naming the file, the page and the reason; its status is in `doc`.
    """
    source = _source_metadata(doc.source)
    elements: list[Element] = []
    headings: list[tuple[int, str]] = []  # the open headings: (level, element id)
    for position, page in enumerate(doc.pages):
        if include_page_breaks and position:
            elements.append(el.PageBreak(
                "", element_id=element_id(doc.source, page.number, "page_break"),
                metadata=ElementMetadata(page_number=page.number, **source)))
        if not page.blocks:
            log.warning("%s page %d: no elements (status %s%s)", doc.source, page.number,
                        page.status.value, f": {page.reason}" if page.reason else "")
        for block in page.blocks:
            kind = element_type(block)
            ident = element_id(doc.source, page.number, block.index)
            metadata = ElementMetadata(page_number=page.number, **source,
                                       coordinates=coordinates(block, page))
            if kind is el.Title:
                level = heading_level(block)
                while headings and headings[-1][0] >= level:
                    headings.pop()
                metadata.category_depth = level - 1
                metadata.parent_id = headings[-1][1] if headings else None
                headings.append((level, ident))
            elif kind not in _FURNITURE:
                metadata.parent_id = headings[-1][1] if headings else None
            table = block.table
            if table is not None and kind in (el.Table, el.Image):
                metadata.text_as_html = table.to_html()
            if block.figure is not None and block.figure.crop_path:
                metadata.image_path = block.figure.crop_path
            crop = (images or {}).get((page.number, block.index))
            if crop is not None and kind is el.Image:
                metadata.image_base64 = crop.base64()
                metadata.image_mime_type = "image/png"
            setattr(metadata, PAYLOAD_KEY, block_payload(block, page))
            elements.append(kind(element_text(block, kind), element_id=ident, metadata=metadata))
    return elements


def partition_dsocr(
    filename: str | os.PathLike[str] | None = None,
    *,
    file: Any = None,
    metadata_filename: str | None = None,
    include_page_breaks: bool = False,
    extract_image_block_to_payload: bool = False,
    extract_image_block_output_dir: str | os.PathLike[str] | None = None,
    converter: Any = None,
    **converter_options: Any,
) -> list[Element]:
    """Partition a PDF or image with DeepSeek-OCR, like `unstructured`'s `partition_pdf`.

    Args:
        filename: the file's path; or
        file: a binary file object (or bytes) to read instead.
        metadata_filename: the name recorded as `filename` (default: the path, or the file
            object's `name`; an unnamed stream is named by a hash of its bytes).
        include_page_breaks: put a `PageBreak` element between pages.
        extract_image_block_to_payload: give each figure's `Image` element its crop as
            `image_base64` (PNG, `image_mime_type`), cut from the page rendered again.
        extract_image_block_output_dir: write the crops there as PNG files instead (the
            elements' `image_path`), like `partition_pdf`'s option of that name.
        converter: a ready converter (`convert(source, *, name=None) -> Document`); default a
            `dsocr_connectors.pipeline.Converter(**converter_options)`.
        **converter_options: `Converter` options (`model`, `engine`, `mode`, `ocr`, `dpi`,
            `pages`, `password`, ...). With no model, pages are read from the text layer.

    Returns:
        The elements of `to_elements`.

    Raises:
        ValueError: not exactly one of `filename` and `file` given.
        FileNotFoundError: `filename` is not a file.
        TypeError: both `converter` and converter options given, or `file` is not binary.
    """
    from dsocr_connectors.connecting import make_converter

    if (filename is None) == (file is None):
        raise ValueError("pass exactly one of filename= and file=")
    get_converter = make_converter(converter, converter_options)
    if filename is not None:
        path = os.fspath(filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        doc = get_converter().convert(path, name=metadata_filename)
    else:
        data = file if isinstance(file, (bytes, bytearray)) else file.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"file= must be bytes or a binary file object, not {type(data)}")
        name = metadata_filename or getattr(file, "name", None)
        if not isinstance(name, str) or not name:
            name = "stream-" + hashlib.sha256(data).hexdigest()[:16]
        path = bytes(data)
        doc = get_converter().convert(path, name=name)
    images = None
    if extract_image_block_to_payload or extract_image_block_output_dir is not None:
        from dsocr_connectors.connecting import Prepare

        figures = "path" if extract_image_block_output_dir is not None else "base64"
        prepared = Prepare(figures, str(extract_image_block_output_dir or "") or None,
                           converter_options.get("password"))(doc, path)
        images = prepared.crops if figures == "base64" else None
    return to_elements(doc, include_page_breaks=include_page_breaks, images=images)
