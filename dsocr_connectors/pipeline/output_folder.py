"""A resumable archive of conversions: one folder, files per document, and a manifest.

Layout of `OUT/`:
- `<stem>.json`: the `Document` (always written: it is what a resume merges into);
- `<stem>.md`, and on request `<stem>.html` and `<stem>.preview/` (layout previews);
- `<stem>.raw/NNNN.txt`: each page's raw model output (pages read by a model only);
- `manifest.json`: per source, its stem, the sha256 of its bytes, a hash of the converter
  options, and every page's status (and reason when not ok).

Every file is written to a temporary name and renamed, and a document enters the manifest
only after all its files are in place, so a killed run never leaves a document that looks
done. A rerun skips a source whose bytes and options are unchanged; with `redo_failed` it
converts only the failed pages of such a source again and merges them into its document.
A changed source or changed options convert the whole source again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr_connectors.document import Document, PageStatus
from dsocr_connectors.pipeline.converter import NEEDS_MODEL, Converter
from dsocr_connectors.pipeline.feed import Job

log = logging.getLogger(__name__)

PREVIEW_DPI = 72
FIGURE_DPI = 144
MANIFEST = "manifest.json"
FORMATS = ("md", "json", "html", "preview", "figures")
MANIFEST_VERSION = 1


@dataclass
class Summary:
    """What a run did: documents converted and skipped, pages by status, pages left over."""

    num_converted: int = 0
    num_skipped: int = 0
    num_redone_pages: int = 0
    pages_by_status: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, int, str]] = field(default_factory=list)  # source, page, reason
    needs_model: list[tuple[str, int]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when no page failed, 2 when some did."""
        return 2 if self.pages_by_status[PageStatus.FAILED.value] else 0

    def add(self, source: str, pages: dict[str, Any]) -> None:
        for number, entry in sorted(pages.items(), key=lambda kv: int(kv[0])):
            self.pages_by_status[entry["status"]] += 1
            if entry["status"] == PageStatus.FAILED.value:
                reason = entry.get("reason") or ""
                self.failed.append((source, int(number), reason))
                if reason.startswith(NEEDS_MODEL):
                    self.needs_model.append((source, int(number)))


@dataclass
class Plan:
    """One source to convert: its manifest key (resolved path), its path, its output stem,
    the sha256 of its bytes, the pages to redo (None: the whole source), and its name in
    results when not `path` (`path` may be resolved for another process, `name` not)."""

    key: str
    path: Path
    stem: str
    sha256: str
    redo_pages: list[int] | None = None
    name: str | None = None

    @property
    def source(self) -> str:
        """The document's name: the path as the user gave it."""
        return self.name or str(self.path)

    def job(self) -> Job:
        """The converter's job for this plan."""
        return Job(self.path, name=self.source, pages=self.redo_pages)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


class OutputFolder:
    """Converts sources into a folder, resuming where an earlier run stopped.

    Args:
        root: the output folder (created if missing).
        formats: among "md", "json", "html", "preview"; JSON is written in any case.
        redo_failed: convert the failed pages of already converted sources again.

    Raises:
        ValueError: an unknown format.
    """

    def __init__(
        self, root: str | Path, *, formats: Iterable[str] = ("md", "json", "figures"),
        redo_failed: bool = False,
    ) -> None:
        self.root = Path(root)
        self.formats = set(formats) | {"json"}
        unknown = self.formats - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}; "
                             f"choose among {', '.join(FORMATS)}")
        self.redo_failed = redo_failed
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.rglob(".*.tmp-*"):  # left by a killed run; never looked done
            stale.unlink(missing_ok=True)
        self.manifest = self._read_manifest()

    def convert(self, converter: Converter, sources: Iterable[str | Path]) -> Summary:
        """Convert every source not already done; returns the run's `Summary`."""
        summary = Summary()
        options = options_hash(converter.options())
        plans = self.plan(sources, options, summary)
        jobs = [plan.job() for plan in plans]
        for plan, document in zip(plans, converter.iter_documents(jobs), strict=True):
            entry = write_document(self.root, self.formats, plan, document, options)
            self.record(plan, entry, summary)
            self.save_manifest()
        return summary

    def plan(self, sources: Iterable[str | Path], options: str, summary: Summary) -> list[Plan]:
        """What to convert under these options (a hash): new, changed and, with `redo_failed`,
        partly failed sources. Sources already done are counted into `summary` as skipped."""
        plans: list[Plan] = []
        taken = {e["stem"] for e in self.manifest["documents"].values()}
        for source in sources:
            path = Path(source)
            key = str(path.resolve())
            try:
                sha = file_sha256(path)
            except OSError as exc:  # the loader reports it on a failed page; tried every run
                log.warning("%s: cannot be read (%s)", path, exc)
                sha = ""
            entry = self.manifest["documents"].get(key)
            is_same = (entry is not None and sha and entry["sha256"] == sha
                       and entry["options"] == options and "error" not in entry
                       and (self.root / f"{entry['stem']}.json").exists())
            if is_same:
                failed = [int(n) for n, p in entry["pages"].items() if p["status"] == "failed"]
                if not (self.redo_failed and failed):
                    log.info("%s: already done, skipped", path)
                    summary.num_skipped += 1
                    summary.add(entry["source"], entry["pages"])
                    continue
                plans.append(Plan(key, path, entry["stem"], sha, redo_pages=sorted(failed)))
                continue
            stem = entry["stem"] if entry else _unique_stem(path.stem, taken)
            taken.add(stem)
            plans.append(Plan(key, path, stem, sha))
        return plans

    def record(self, plan: Plan, entry: dict[str, Any], summary: Summary) -> None:
        """Enter a converted document (its manifest entry) into the manifest and `summary`;
        `save_manifest` makes it last."""
        self.manifest["documents"][plan.key] = entry
        log.info("%s -> %s: %s", plan.path, plan.stem,
                 dict(sorted(Counter(p["status"] for p in entry["pages"].values()).items())))
        summary.num_converted += 1
        if plan.redo_pages is not None:
            summary.num_redone_pages += len(plan.redo_pages)
        summary.add(entry["source"], entry["pages"])

    def save_manifest(self) -> None:
        """Write the manifest (atomically): the documents recorded so far count as done."""
        write_atomic(self.root / MANIFEST, json.dumps(self.manifest, indent=1, ensure_ascii=False))

    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.exists():
            return {"version": MANIFEST_VERSION, "documents": {}}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a readable manifest ({exc}); move it away to start over") from exc
        if manifest.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{path}: manifest version {manifest.get('version')!r} unknown")
        return manifest


def write_document(
    root: Path, formats: set[str], plan: Plan, document: Document, options: str
) -> dict[str, Any]:
    """Write one converted document's files under `root`; returns its manifest entry.

    With `plan.redo_pages` the document holds only the redone pages: they are merged into
    the document written before. Every file is written atomically; the caller enters the
    entry into the manifest once this returns.
    """
    if plan.redo_pages is not None:
        document = _merge(root / f"{plan.stem}.json", document)
    stem = plan.stem
    raw_dir = root / f"{stem}.raw"
    written = set()
    for page in document.pages:
        if page.raw_output is not None:
            written.add(f"{page.number:04d}.txt")
            write_atomic(raw_dir / f"{page.number:04d}.txt", page.raw_output)
    for stale in raw_dir.glob("*.txt"):  # from an earlier version of this source
        if stale.name not in written:
            stale.unlink()
    if "figures" in formats or "preview" in formats:  # before the Markdown and JSON: crops
        write_page_images(document, plan.path, root, stem, figures="figures" in formats,
                          previews="preview" in formats)
    if "md" in formats:
        write_atomic(root / f"{stem}.md", document.to_markdown())
    if "html" in formats:
        write_atomic(root / f"{stem}.html", document.to_html())
    write_atomic(root / f"{stem}.json", document.to_json())
    return {
        "source": document.source,
        "stem": stem,
        "sha256": plan.sha256,
        "options": options,
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


def _unique_stem(stem: str, taken: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def write_page_images(document: Document, source: Path, root: Path, stem: str, *,
                      figures: bool, previews: bool) -> None:
    """Figure crops (`<stem>.figures/`, 144 dpi) and layout previews (`<stem>.preview/`,
    half that size, boxes drawn by type), from one rendering of each page that needs either.

    Page images are freed during conversion, so pages are rendered again here; a page that
    cannot be rendered again is skipped (its JSON says what was read). Each figure's
    `crop_path` is set relative to `root`, so the Markdown written beside it links the crop.
    """
    import loaders
    from dsocr_connectors.document import BlockType
    from dsocr_connectors.export.preview import draw_layout, save_figure_crops

    def has_figure(page) -> bool:
        return any(b.type is BlockType.FIGURE and b.boxes for b in page.blocks)

    wanted = {p.number: p for p in document.pages
              if (previews and p.blocks) or (figures and has_figure(p))}
    if not wanted:
        return
    for loaded in loaders.iter_pages(source, dpi=FIGURE_DPI, pages=sorted(wanted)):
        page = wanted.get(loaded.number)
        if loaded.image is None or page is None:
            continue
        if figures and has_figure(page):
            for path in save_figure_crops(page, loaded.image, root / f"{stem}.figures"):
                for block in page.blocks:
                    if block.figure is not None and block.figure.crop_path == str(path):
                        block.figure.crop_path = f"{stem}.figures/{path.name}"
        if previews and page.blocks:
            folder = root / f"{stem}.preview"
            folder.mkdir(parents=True, exist_ok=True)
            image = loaded.image.reduce(FIGURE_DPI // PREVIEW_DPI)
            draw_layout(page, image).save(folder / f"page-{page.number:04d}-layout.png")
