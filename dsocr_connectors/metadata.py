"""Metadata both connectors attach to pages and chunks, and the `dsocr` payload round trip.

Flat, JSON-serialisable keys that retrieval needs (source, page, page label, section, boxes
for highlighting, table HTML/Markdown) plus one namespaced key, `dsocr`, holding the bulky
structured data: the Page (or Document) JSON on a loaded document, the block references and
block boxes on a chunk. `NOT_EMBEDDED` lists the keys kept out of embedding and LLM text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsocr_connectors.connecting import worst_status
from dsocr_connectors.document import Box, Document, Page
from splitters.chunk import Chunk
from splitters.headings import headings_at_page_start
from splitters.render import table_html, table_markdown

PAYLOAD_KEY = "dsocr"
NOT_EMBEDDED = [
    PAYLOAD_KEY, "source", "file_path", "page", "page_span", "total_pages", "status",
    "page_status", "flags", "block_types", "heading_path", "boxes", "boxes_norm", "boxes_px",
    "boxes_pt", "table_html", "table_markdown", "table_part", "inchikeys",
]


def page_label(page: Page | None, number: int) -> str:
    """The PDF's label for the page when it has one, else its 1-based number as text."""
    return page.label if page is not None and page.label else str(number)


def document_metadata(doc: Document) -> dict[str, Any]:
    """Keys shared by every page of `doc`: source, file path and name, total pages."""
    return {
        "source": doc.source,
        "file_path": doc.source,
        "file_name": Path(doc.source).name,
        "total_pages": int(doc.metadata.get("total_pages", doc.num_pages)),
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


def page_payload(doc: Document, page: Page) -> dict[str, Any]:
    """The `dsocr` value of a per-page document: the Page JSON and the headings open above it."""
    return {"page": page.model_dump(mode="json"),
            "open_headings": [list(h) for h in headings_at_page_start(doc)[page.number]]}


def document_payload(doc: Document) -> dict[str, Any]:
    """The `dsocr` value of a per-file document: the Document JSON."""
    return {"document": doc.model_dump(mode="json")}


def text_and_metadata(doc: Document, page: Page | None,
                      export_type: str) -> tuple[str, dict[str, Any]]:
    """What both connectors put in one framework document: its text and metadata.

    Per page (`page` given) or per file. Markdown: the text is the Markdown and the structure
    rides under `PAYLOAD_KEY`; JSON: the text is the Page/Document JSON and only the open
    headings ride along (the section context a later chunker needs).
    """
    from dsocr_connectors.connecting import ExportType, page_text

    metadata = page_metadata(doc, page) if page is not None else file_metadata(doc)
    payload = page_payload(doc, page) if page is not None else document_payload(doc)
    if export_type == ExportType.JSON:
        text = (page if page is not None else doc).model_dump_json()
        if page is not None:
            metadata[PAYLOAD_KEY] = {"open_headings": payload["open_headings"]}
    else:
        pages = [page] if page is not None else doc.pages
        text = "\n\n".join(t for t in (page_text(p) for p in pages) if t)
        metadata[PAYLOAD_KEY] = payload
    return text, metadata


def payload_document(metadata: dict[str, Any], text: str = "") -> Document | None:
    """The structured document a loaded document carries, or None for plain text.

    The structure is `metadata["dsocr"]` (MARKDOWN export: {"page": ...} or
    {"document": ...}) or the text itself (JSON export: a Page or a Document JSON). A page
    becomes a one-page Document whose source is `metadata["source"]` and whose metadata
    holds the headings open above it (`open_headings`), so sections continue across pages.
    """
    payload = metadata.get(PAYLOAD_KEY)
    payload = payload if isinstance(payload, dict) else {}
    headings = payload.get("open_headings", [])
    if "document" in payload:
        return Document.model_validate(payload["document"])
    if "page" in payload:
        return _page_document(Page.model_validate(payload["page"]), metadata, headings)
    if not text.lstrip().startswith("{"):
        return None
    try:  # the JSON export; JSON of anything else is plain text
        data = json.loads(text)
        if isinstance(data, dict) and "pages" in data:
            return Document.model_validate(data)
        if isinstance(data, dict) and "number" in data:
            return _page_document(Page.model_validate(data), metadata, headings)
    except ValueError:
        return None
    return None


def _page_document(page: Page, metadata: dict[str, Any], headings: list) -> Document:
    return Document(
        source=str(metadata.get("source", "")),
        pages=[page],
        metadata={"total_pages": metadata.get("total_pages", 1),
                  "open_headings": [tuple(h) for h in headings]},
    )


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
