"""Metadata both connectors attach to pages, chunks and figures; ids; flat values for stores.

Flat by default: every value is a `str`, `int`, `float` or `bool` (what Chroma, Pinecone,
Qdrant filters, Weaviate and LlamaIndex's `flat_metadata` stores accept); lists and dicts
(`flags`, `page_span`, `heading_path`, `boxes*`, `dsocr`, ...) are stored as their JSON text
and `rich_metadata` decodes them again. `flat=False` keeps them as lists and dicts.
Ids are UUIDs derived from the source, page and chunk (`stable_id`), the same on every run,
so re-ingesting a file upserts instead of duplicating, and Qdrant and Weaviate accept them.
`NOT_EMBEDDED` lists the keys kept out of embedding and LLM text.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsocr_connectors.connecting import worst_status
from dsocr_connectors.document import Block, BlockType, Box, Document, Page
from dsocr_connectors.payload import PAYLOAD_KEY, Prepared
from dsocr_connectors.pdf_metadata import KEYS as PDF_KEYS
from splitters.chunk import Chunk, union_box
from splitters.render import CENTER_TAGS, table_html, table_markdown
from splitters.structure import carried_heading_paths

__all__ = ["NOT_EMBEDDED", "PAYLOAD_KEY", "chunk_metadata", "flatten", "rich_metadata",
           "stable_id"]

NOT_EMBEDDED = [
    PAYLOAD_KEY, "source", "file_path", "page", "page_span", "total_pages", "status",
    "page_status", "flags", "block_types", "heading_path", "boxes", "boxes_norm", "boxes_px",
    "boxes_pt", "table_html", "table_markdown", "table_part", "inchikeys", "image_base64",
    "image_path", "image_mime_type", "image_width", "image_height", "block_index",
    *[k for k in PDF_KEYS if k != "title"],
]
# keys whose flat value is JSON text (rich_metadata decodes them)
JSON_KEYS = frozenset({PAYLOAD_KEY, "flags", "page_span", "block_types", "heading_path",
                       "boxes", "boxes_norm", "boxes_px", "boxes_pt", "smiles", "inchikeys"})
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "dsocr-connectors")


def stable_id(key: str) -> str:
    """A UUID (text) derived from `key` ("report.pdf#page=3#chunk=2"): same key, same id."""
    return str(uuid.uuid5(_NAMESPACE, key))


def flatten(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata every store accepts: lists and dicts as JSON text, None values dropped."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, dict)):
            out[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(value, (str, bool, int, float)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def rich_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Flat metadata with the JSON text of `JSON_KEYS` decoded back into lists and dicts."""
    out = dict(metadata)
    for key in JSON_KEYS & out.keys():
        value = out[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass
    return out


def page_label(page: Page | None, number: int) -> str:
    """The PDF's label for the page when it has one, else its 1-based number as text."""
    return page.label if page is not None and page.label else str(number)


def document_metadata(doc: Document) -> dict[str, Any]:
    """Keys shared by every page of `doc`: source, file path and name, total pages, and a
    PDF's document information (`producer`, `creator`, `creationdate`, ...)."""
    return {
        "source": doc.source,
        "file_path": doc.source,
        "file_name": Path(doc.source).name,
        "total_pages": int(doc.metadata.get("total_pages", doc.num_pages)),
        **doc.metadata.get("pdf", {}),
    }


def page_metadata(doc: Document, page: Page) -> dict[str, Any]:
    """Metadata of one page as a document of its own (`page` is 1-based)."""
    return {
        **document_metadata(doc),
        "page": page.number,
        "page_label": page_label(page, page.number),
        "status": page.status.value,
        "flags": list(page.flags),
    }


def file_metadata(doc: Document) -> dict[str, Any]:
    """Metadata of a whole file as one document: `page` is its first page, plus the span."""
    first = doc.pages[0].number if doc.pages else 1
    last = doc.pages[-1].number if doc.pages else 1
    flags = [f"page {p.number}: {f}" for p in doc.pages for f in p.flags]
    return {
        **document_metadata(doc),
        "page": first,
        "page_label": page_label(doc.pages[0] if doc.pages else None, first),
        "page_span": [first, last],
        "status": worst_status(doc.pages),
        "flags": flags,
    }


def text_and_metadata(prepared: Prepared, page: Page | None,
                      export_type: str) -> tuple[str, dict[str, Any]]:
    """What both connectors put in one framework document: its text and metadata.

    Per page (`page` given) or per file. Markdown: the text is the page's Markdown (a whole
    file's: continued tables merged) and the structure rides under `PAYLOAD_KEY`; JSON: the
    text is the Page/Document JSON and the payload holds the rest (headings, figures).
    """
    from dsocr_connectors.connecting import ExportType, page_text
    from dsocr_connectors.deep.table_merge import merged_view

    doc = prepared.document
    as_json = export_type == ExportType.JSON
    if page is not None:
        metadata = page_metadata(doc, page)
        payload = prepared.page_payload(page, with_page=not as_json)
        text = page.model_dump_json() if as_json else page_text(page)
    else:
        metadata = file_metadata(doc)
        payload = prepared.document_payload()
        if as_json:
            payload.pop("document")
            text = doc.model_dump_json()
        else:
            text = "\n\n".join(t for t in (page_text(p) for p in merged_view(doc).pages) if t)
    metadata[PAYLOAD_KEY] = payload
    return text, metadata


def _box(box: Box) -> list[int]:
    return [box.x1, box.y1, box.x2, box.y2]


def chunk_metadata(chunk: Chunk, doc: Document) -> dict[str, Any]:
    """Citation and highlight metadata of a chunk of `doc` (pages 1-based, boxes per page).

    Keys: source, page (first page), page_label, page_span, block_types, heading_path,
    section ("A > B"), boxes (0..999 grid), boxes_norm (0..1), boxes_px (pixels of the page
    image, pages whose size is known), boxes_pt (PDF points, origin top-left, PDF pages),
    page_status (the worst status of the spanned pages), flags (page and block flags, plus
    "oversize"), table_html/table_markdown/table_part when the chunk holds a table (a
    chart's data included), smiles/inchikeys when it holds chemical structures, and `dsocr`
    with block references, every block box and the chart data (series, categories, values).
    Values are lists and dicts here; the connectors flatten them (see `flatten`).
    """
    pages = {p.number: p for p in doc.pages}
    first, last = chunk.pages
    spanned = [pages[n] for n in chunk.page_numbers if n in pages]
    blocks = {(p.number, b.index): b for p in spanned for b in p.blocks}
    flags = [f"page {p.number}: {f}" for p in spanned for f in p.flags]
    flags += [f"block {n}.{i}: {f}" for n, i in chunk.block_refs
              for f in (blocks[(n, i)].flags if (n, i) in blocks else [])]
    if chunk.metadata.get("oversize"):
        flags.append("oversize")
    boxes, norm, px, pt = [], [], [], []
    for number, box in chunk.page_boxes.items():
        boxes.append({"page": number, "bbox": _box(box)})
        norm.append({"page": number, "bbox": [round(v, 4) for v in box.normalized()]})
        page = pages.get(number)
        if page is not None and page.image_width and page.image_height:
            coords = box.to_pixels(page.image_width, page.image_height)
            px.append({"page": number, "bbox": [round(v, 1) for v in coords]})
        if page is not None and page.width_pt and page.height_pt:
            coords = box.to_points(page.width_pt, page.height_pt)
            pt.append({"page": number, "bbox": [round(v, 2) for v in coords]})
    metadata: dict[str, Any] = {
        "source": doc.source,
        "page": first,
        "page_label": page_label(pages.get(first), first),
        "page_span": [first, last],
        "block_types": list(chunk.block_types),
        "heading_path": list(chunk.heading_path),
        "section": " > ".join(chunk.heading_path),
        "boxes": boxes,
        "boxes_norm": norm,
        "boxes_px": px,
        "boxes_pt": pt,
        "page_status": worst_status(spanned),
        "flags": flags,
    }
    if chunk.tables:
        metadata["table_html"] = "\n".join(table_html(t) for t in chunk.tables)
        metadata["table_markdown"] = "\n\n".join(table_markdown(t) for t in chunk.tables)
    if "table_part" in chunk.metadata:
        metadata["table_part"] = chunk.metadata["table_part"]
    held = [blocks[ref] for ref in chunk.block_refs if ref in blocks]
    chemistry = [b.chemistry for b in held if b.chemistry is not None]
    if chemistry:
        metadata["smiles"] = [c.canonical_smiles or c.smiles for c in chemistry]
        metadata["inchikeys"] = [c.inchikey for c in chemistry if c.inchikey]
    charts = [b.chart.model_dump(exclude={"source_text"}) for b in held if b.chart is not None]
    metadata[PAYLOAD_KEY] = {
        **({"charts": charts} if charts else {}),
        "blocks": [list(ref) for ref in chunk.block_refs],
        "block_boxes": [{"page": n, "bbox": _box(b)} for n, b in chunk.block_boxes],
        **{k: v for k, v in chunk.metadata.items() if k != "table_part"},
    }
    return metadata


def plain_chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    """Metadata of a chunk cut from plain text: structure only, no pages, boxes or status."""
    metadata: dict[str, Any] = {
        "block_types": list(chunk.block_types),
        "heading_path": list(chunk.heading_path),
        "section": " > ".join(chunk.heading_path),
    }
    if chunk.tables:
        metadata["table_html"] = "\n".join(table_html(t) for t in chunk.tables)
        metadata["table_markdown"] = "\n\n".join(table_markdown(t) for t in chunk.tables)
    if "table_part" in chunk.metadata:
        metadata["table_part"] = chunk.metadata["table_part"]
    return metadata


@dataclass
class FigureItem:
    """A figure as a retrievable item: its words, metadata, crop, and the chunk holding it."""

    text: str
    metadata: dict[str, Any]
    page: int
    block: int
    mimetype: str
    image_base64: str | None = None
    image_path: str | None = None
    holder: int | None = None  # index of the text chunk that holds the figure's block


def figure_caption(page: Page, block: Block) -> str:
    """The figure's caption: its own, else the `figure_caption` block next to it."""
    if block.figure is not None and block.figure.caption:
        return block.figure.caption.strip()
    position = page.blocks.index(block)
    for other in page.blocks[position + 1: position + 2] + page.blocks[max(0, position - 1):
                                                                        position]:
        if other.type is BlockType.FIGURE_CAPTION:
            return CENTER_TAGS.sub("", other.content).strip()
    return ""


def figure_items(doc: Document, entries: list[dict[str, Any]],
                 chunks: list[Chunk]) -> list[FigureItem]:
    """One item per figure crop in `entries` (the `figures` payload), in reading order."""
    paths = carried_heading_paths(doc, doc.metadata.get("open_headings", ()))
    pages = {p.number: p for p in doc.pages}
    items = []
    for entry in entries:
        page = pages.get(int(entry["page"]))
        block = next((b for b in page.blocks if b.index == int(entry["block"])), None) \
            if page is not None else None
        if page is None or block is None or not block.boxes:
            continue
        caption = figure_caption(page, block)
        description = block.figure.description if block.figure is not None else None
        words = [f"Figure: {caption}" if caption else "Figure", description or "",
                 CENTER_TAGS.sub("", block.content).strip()]
        ref = (page.number, block.index)
        chunk = Chunk(text="\n".join(w for w in words if w), source=doc.source,
                      pages=(page.number, page.number),
                      page_boxes={page.number: union_box(block.boxes)},
                      block_boxes=[(page.number, b) for b in block.boxes],
                      heading_path=list(paths.get(ref, ())), block_types=["figure"],
                      block_refs=[ref])
        metadata = chunk_metadata(chunk, doc)
        metadata.update({"figure_caption": caption, "block_index": block.index,
                         "image_mime_type": entry.get("mimetype", "image/png"),
                         "image_width": entry.get("width"), "image_height": entry.get("height")})
        holder = next((i for i, c in enumerate(chunks) if ref in c.block_refs), None)
        items.append(FigureItem(chunk.text, metadata, page.number, block.index,
                                metadata["image_mime_type"], entry.get("image_base64"),
                                entry.get("image_path"), holder))
    return items
