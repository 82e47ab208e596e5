"""The `dsocr` payload: the structure a loaded document carries to the chunkers, and back.

A per-page framework document carries, under `metadata["dsocr"]`:
- `page`: the Page JSON (MARKDOWN export; with the JSON export the text is the Page),
  without the text layer's word boxes of checked blocks (`TextCheck.words`: ~70 bytes a word,
  in every page's metadata; the Document JSON of `dsocr convert` keeps them);
- `open_headings` and `heading_paths`: the headings open where the page starts and the
  heading path of each of its blocks, computed over the whole document, so sections and
  table titles behave on a lone page as in the whole document;
- `continuations`: the pages (holding only those blocks) that continue a table of this
  page, so its chunks hold the merged table; the continuation's own page document then
  leaves those rows out (`continued_tables`);
- `figures`: the figure crops of the page: `{"page", "block", "mimetype", "width",
  "height"}` plus `image_base64` or `image_path`.
A per-file document carries `{"document": <Document JSON>, "figures": [...]}`.
With flat metadata (the default) this whole value is stored as JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dsocr_connectors.document import Document, Page
from dsocr_connectors.figures import MIMETYPE, FigureCrop
from splitters.headings import heading_paths, headings_at_page_start
from splitters.structure import CHUNKED_WITH_FIRST_PART

PAYLOAD_KEY = "dsocr"
# Left out of the page payload: the per-word boxes of blocks checked against the text layer.
WITHOUT_WORD_BOXES = {"blocks": {"__all__": {"text_check": {"words"}}}}


@dataclass
class Prepared:
    """A converted document and what its framework documents are built from."""

    document: Document
    crops: dict[tuple[int, int], FigureCrop] = field(default_factory=dict)
    figures: str | None = "base64"  # how crops ride: "base64", "path" or None

    def __post_init__(self) -> None:
        self.paths = heading_paths(self.document)
        self.at_start = headings_at_page_start(self.document)

    def figure_entries(self, page: int | None = None) -> list[dict[str, Any]]:
        """The payload entries of the crops (of one page, or all)."""
        entries = []
        for (number, block), crop in sorted(self.crops.items()):
            if page is not None and number != page:
                continue
            entry: dict[str, Any] = {"page": number, "block": block, "mimetype": MIMETYPE,
                                     "width": crop.width, "height": crop.height}
            if self.figures == "path" and crop.path:
                entry["image_path"] = crop.path
            elif self.figures == "base64":
                entry["image_base64"] = crop.base64()
            else:
                continue
            entries.append(entry)
        return entries

    def page_payload(self, page: Page, *, with_page: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if with_page:
            payload["page"] = page.model_dump(mode="json", exclude=WITHOUT_WORD_BOXES)
        payload["open_headings"] = [list(h) for h in self.at_start[page.number]]
        payload["heading_paths"] = [[page.number, b.index, list(self.paths[(page.number,
                                                                            b.index)])]
                                    for b in page.blocks]
        continuations = self._continuations(page)
        if continuations:
            payload["continuations"] = continuations
        figures = self.figure_entries(page.number)
        if figures:
            payload["figures"] = figures
        return payload

    def document_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"document": self.document.model_dump(mode="json")}
        figures = self.figure_entries()
        if figures:
            payload["figures"] = figures
        return payload

    def _continuations(self, page: Page) -> list[dict[str, Any]]:
        """Pages holding only the blocks that continue this page's tables."""
        from dsocr_connectors.deep.table_merge import table_chain

        by_page: dict[int, list[int]] = {}
        for block in page.blocks:
            if block.continued_by is not None and block.continues is None:
                for part_page, part in table_chain(self.document, page, block)[1:]:
                    by_page.setdefault(part_page.number, []).append(part.index)
        out = []
        for other in self.document.pages:
            if other.number in by_page:
                kept = [b for b in other.blocks if b.index in by_page[other.number]]
                stub = other.model_copy(update={"blocks": kept, "raw_output": None})
                out.append(stub.model_dump(mode="json"))
        return out


def read_payload(metadata: dict[str, Any]) -> dict[str, Any]:
    """The `dsocr` value as a dict, whether stored as a dict or as JSON text."""
    payload = metadata.get(PAYLOAD_KEY)
    if isinstance(payload, str) and payload.startswith("{"):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    return payload if isinstance(payload, dict) else {}


def payload_document(metadata: dict[str, Any], text: str = "") -> Document | None:
    """The structured document a loaded document carries, or None for plain text.

    The structure is `metadata["dsocr"]` (MARKDOWN export) or the text itself (JSON
    export: a Page or a Document JSON). A page becomes a Document of that page (plus the
    pages continuing its tables) whose metadata holds the heading context (see above).
    """
    payload = read_payload(metadata)
    if "document" in payload:
        return Document.model_validate(payload["document"])
    if "page" in payload:
        return _page_document(Page.model_validate(payload["page"]), metadata, payload)
    if not text.lstrip().startswith("{"):
        return None
    try:  # the JSON export; JSON of anything else is plain text
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and "pages" in data:
        return Document.model_validate(data)
    if isinstance(data, dict) and "number" in data and "blocks" in data:
        return _page_document(Page.model_validate(data), metadata, payload)
    return None


def _page_document(page: Page, metadata: dict[str, Any], payload: dict[str, Any]) -> Document:
    extra = [Page.model_validate(p) for p in payload.get("continuations", [])]
    return Document(
        source=str(metadata.get("source", "")),
        pages=[page, *extra],
        metadata={"total_pages": metadata.get("total_pages", 1),
                  "open_headings": [tuple(h) for h in payload.get("open_headings", [])],
                  "heading_paths": payload.get("heading_paths", []),
                  "continued_tables": CHUNKED_WITH_FIRST_PART},
    )


def payload_figures(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The figure crop entries a loaded document carries (see the module docstring)."""
    return list(read_payload(metadata).get("figures", []))
