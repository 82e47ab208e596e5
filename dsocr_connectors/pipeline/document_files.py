"""One document's files in an output folder, each written atomically; its manifest entry.

`write_document` is all a writer needs (a Ray replica calls it on another machine): the
JSON, Markdown, HTML, raw outputs, figure crops and previews of one `Document`, then an
fsync of every folder written into, and the manifest entry to record afterwards.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr_connectors.document import Document, Figure
from dsocr_connectors.pipeline.atomic_write import fsync_dir, write_atomic
from dsocr_connectors.pipeline.manifest import PRIVATE

if TYPE_CHECKING:
    from dsocr_connectors.pipeline.output_folder import Plan

PREVIEW_DPI = 72
FIGURE_DPI = 144
_RAW_NAME = re.compile(r"\d{4}\.txt")
_CROP_NAME = re.compile(r"page-\d{4}-block-\d{3}\.png")
_PREVIEW_NAME = re.compile(r"page-\d{4}-layout\.png")


def write_document(
    root: Path, formats: set[str], plan: Plan, document: Document, options: str
) -> dict[str, Any]:
    """Write one converted document's files under `root`; returns its manifest entry.

    With `plan.redo_pages` the document holds only the redone pages: they are merged into
    the document written before. Every file is written atomically and the folders written
    into are fsynced; the caller enters the entry into the manifest once this returns.
    """
    if plan.redo_pages is not None:
        document = _merge(root / f"{plan.stem}.json", document)
    stem = plan.stem
    tmp_dir = root / PRIVATE / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    folders: set[Path] = set()

    def write(path: Path, data: str | bytes) -> None:
        write_atomic(path, data, tmp_dir=tmp_dir, sync_dir=False)
        folders.add(path.parent)

    raw_dir = root / f"{stem}.raw"
    written = set()
    for page in document.pages:
        if page.raw_output is not None:
            written.add(f"{page.number:04d}.txt")
            write(raw_dir / f"{page.number:04d}.txt", page.raw_output)
    _remove_stale(raw_dir, _RAW_NAME, keep=written)
    if "figures" in formats or "preview" in formats:  # before the Markdown and JSON: crops
        write_page_images(document, plan.path, root, stem, figures="figures" in formats,
                          previews="preview" in formats, write=write)
    if "md" in formats:
        write(root / f"{stem}.md", document.to_markdown())
    if "html" in formats:
        write(root / f"{stem}.html", document.to_html())
    write(root / f"{stem}.json", document.to_json())
    for folder in {root, *folders}:
        fsync_dir(folder)
    return {
        "source": document.source,
        "stem": stem,
        "sha256": plan.sha256,
        "options": options,
        "formats": sorted(formats | {"json"}),
        "pages": {
            str(p.number): {"status": p.status.value, **({"reason": p.reason} if p.reason else {})}
            for p in document.pages
        },
    }


def _merge(path: Path, redone: Document) -> Document:
    """Put redone pages in place of the old ones (by page number) of the document at `path`."""
    old = Document.from_json(path.read_text(encoding="utf-8"))
    fresh = {p.number: p for p in redone.pages}
    pages = [fresh.pop(p.number, p) for p in old.pages]
    pages.extend(fresh.values())  # a page the first run did not produce (should not happen)
    return old.model_copy(update={"pages": sorted(pages, key=lambda p: p.number)})


def _remove_stale(folder: Path, pattern: re.Pattern[str], keep: set[str]) -> None:
    """Remove files of ours (names matching `pattern`) that the new version has not."""
    if folder.is_dir():
        for stale in folder.iterdir():
            if pattern.fullmatch(stale.name) and stale.name not in keep:
                stale.unlink(missing_ok=True)


def write_page_images(document: Document, source: Path, root: Path, stem: str, *,
                      figures: bool, previews: bool,
                      write: Callable[[Path, bytes], None] | None = None) -> None:
    """Figure crops (`<stem>.figures/`, 144 dpi) and layout previews (`<stem>.preview/`,
    half that size, boxes drawn by type), from one rendering of each page that needs either.

    Page images are freed during conversion, so pages are rendered again here; a page that
    cannot be rendered again is skipped (its JSON says what was read, and its images of an
    earlier run stay). Each figure's `crop_path` is set relative to `root`, so the Markdown
    written beside it links the crop. Files are written with `write` (default: atomically).
    """
    import loaders
    from dsocr_connectors.document import BlockType
    from dsocr_connectors.export.preview import draw_layout, figure_crops

    write = write or (lambda path, data: write_atomic(path, data))

    def has_figure(page) -> bool:
        return any(b.type is BlockType.FIGURE and b.boxes for b in page.blocks)

    wanted = {p.number: p for p in document.pages
              if (previews and p.blocks) or (figures and has_figure(p))}
    for loaded in loaders.iter_pages(source, dpi=FIGURE_DPI, pages=sorted(wanted)) if wanted else ():
        page = wanted.get(loaded.number)
        if loaded.image is None or page is None:
            continue
        if figures and has_figure(page):
            for block, name, crop in figure_crops(page, loaded.image):
                write(root / f"{stem}.figures" / name, _png(crop))
                block.figure = block.figure or Figure()
                block.figure.crop_path = f"{stem}.figures/{name}"
        if previews and page.blocks:
            image = loaded.image.reduce(FIGURE_DPI // PREVIEW_DPI)
            write(root / f"{stem}.preview" / f"page-{page.number:04d}-layout.png",
                  _png(draw_layout(page, image)))
    if figures:
        linked = {Path(b.figure.crop_path).name for p in document.pages for b in p.blocks
                  if b.figure is not None and b.figure.crop_path}
        _remove_stale(root / f"{stem}.figures", _CROP_NAME, keep=linked)
    if previews:
        drawn = {f"page-{p.number:04d}-layout.png" for p in document.pages if p.blocks}
        _remove_stale(root / f"{stem}.preview", _PREVIEW_NAME, keep=drawn)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
