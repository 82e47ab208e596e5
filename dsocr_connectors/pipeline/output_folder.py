"""A resumable archive of conversions: one folder, files per document, and a manifest.

Layout of `OUT/`:
- `<stem>.json`: the `Document` (always written: it is what a resume merges into);
- `<stem>.md`, and on request `<stem>.html`, `<stem>.figures/` (crops the Markdown links)
  and `<stem>.preview/` (layout previews);
- `<stem>.raw/NNNN.txt`: each page's raw model output (pages read by a model only);
- `.dsocr/`: private to dsocr: the manifest (`manifest.py`), the lock, temporaries.

Safety:
- one run at a time: a run holds `.dsocr/lock` (the `filelock` package; the OS frees it
  when the process dies, even killed). A second run into the folder is refused with a
  message naming the first, or with `wait` waits for it;
- every file is written atomically (`atomic_write.py`; temporaries only in `.dsocr/tmp/`,
  which holds nothing else, so nothing of the user's is ever removed), the folders written
  into are fsynced, and only then does the manifest record the document: a killed run
  never leaves a document that looks done, nor a half-written file under a real name;
- a document whose files are about to be replaced is marked `pending` first, so a run
  killed while replacing them leaves the document to be redone, never mixed old and new;
- a source's stem is reserved in the manifest when first planned, and never one already
  used by another source or by a file already in the folder.

A rerun skips a source whose bytes, options (what shapes the pages: `Converter.options()`
and whether, with a salted hash, which password) and formats are unchanged. With
`redo_failed` it converts the failed pages of such a source again and merges them into its
document; when a page stands for the whole file (the file could not be opened, or broke
off there) the whole source is converted again. Missing formats only are written from the
document already there. A changed source or changed options convert the whole source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from dsocr_connectors.document import PageStatus
from dsocr_connectors.pipeline.collect import collect_sources
from dsocr_connectors.pipeline.converter import NEEDS_MODEL, Converter
from dsocr_connectors.pipeline.document_files import (
    FIGURE_DPI,
    PREVIEW_DPI,
    write_document,
    write_page_images,
)
from dsocr_connectors.pipeline.feed import Job
from dsocr_connectors.pipeline.folder_lock import FolderBusy, claim, lock_folder, unlock_folder
from dsocr_connectors.pipeline.manifest import PRIVATE, Manifest
from dsocr_connectors.pipeline.naming import unique_stem

__all__ = [
    "FIGURE_DPI", "FORMATS", "PREVIEW_DPI", "FolderBusy", "OutputFolder", "Plan", "Summary",
    "collect_sources", "options_hash", "write_document", "write_page_images",
]

log = logging.getLogger(__name__)

FORMATS = ("md", "json", "html", "preview", "figures")
OUTPUT_SUFFIXES = (".json", ".md", ".html", ".raw", ".figures", ".preview")
LEGACY_FORMATS = ("json", "md", "figures")  # what a folder of the earlier layout has
PASSWORD_ROUNDS = 100_000
_SKIP = "skip"


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
    the sha256 of its bytes, the pages to redo (None: the whole source; empty: none, only
    the files), and its name in results when not `path` (`path` may be resolved for another
    process, `name` not)."""

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

    Use `convert`, which holds the folder for its duration; or, to drive the steps yourself
    (`plan`, `write_document`, `record`), hold it with `with OutputFolder(...) as folder:`.

    Args:
        root: the output folder (created if missing).
        formats: among "md", "json", "html", "preview", "figures"; JSON is written in any case.
        redo_failed: convert the failed pages of already converted sources again.
        wait: seconds to wait for another run that holds the folder (`math.inf`: as long as
            it takes); 0 refuses at once.

    Raises:
        ValueError: an unknown format.
    """

    def __init__(
        self, root: str | Path, *, formats: Iterable[str] = ("md", "json", "figures"),
        redo_failed: bool = False, wait: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.formats = set(formats) | {"json"}
        unknown = self.formats - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}; "
                             f"choose among {', '.join(FORMATS)}")
        self.redo_failed = redo_failed
        self.wait = wait
        self.manifest: Manifest | None = None
        self._lock: FileLock | None = None

    # -- holding the folder -----------------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def open(self) -> None:
        """Take the folder's lock (or raise `FolderBusy`), remove the temporaries a killed
        run of ours left, and open the manifest (importing one of the earlier layout).

        Raises:
            FolderBusy: another run holds the folder (past `wait` seconds).
            ValueError: the manifest cannot be read (the message says why and what to do).
        """
        if self.manifest is not None:
            return
        private = self.root / PRIVATE
        private.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(self.root, private, wait=self.wait)
        try:
            shutil.rmtree(private / "tmp", ignore_errors=True)  # ours only: we hold the lock
            # A writer of a killed run may still have put a file there since: left for the
            # next run to remove, never an error that stops this one.
            (private / "tmp").mkdir(exist_ok=True)
            claim(private, private / "tmp")
            self.manifest = Manifest(self.root)
        except BaseException:
            unlock_folder(lock, private)
            raise
        self._lock = lock

    def close(self) -> None:
        """Close the manifest and give the folder back."""
        if self.manifest is None:
            return
        self.manifest.close()
        self.manifest = None
        if self._lock is not None:
            unlock_folder(self._lock, self.root / PRIVATE)
            self._lock = None

    # -- converting -------------------------------------------------------------------------

    def convert(self, converter: Converter, sources: Iterable[str | Path]) -> Summary:
        """Convert every source not already done; returns the run's `Summary`.

        Folders and glob patterns among `sources` stand for the files under them
        (`collect_sources`: files inside output folders are left out). Each document is
        written and recorded as the converter yields it, in whatever order.
        """
        if self.manifest is None:
            with self:
                return self.convert(converter, sources)
        summary = Summary()
        options = self.options_key(converter.options(), getattr(converter, "password", None))
        plans = self.plan(collect_sources(sources, self.root), options, summary)
        waiting = {plan.source: plan for plan in plans}  # documents may come in any order
        for document in converter.iter_documents([plan.job() for plan in plans]):
            plan = waiting.pop(document.source)
            entry = write_document(self.root, self.formats, plan, document, options)
            self.record(plan, entry, summary)
        if waiting:
            raise RuntimeError(f"the converter gave no document for {', '.join(waiting)}; "
                               "they are converted at the next run")
        return summary

    def options_key(self, settings: dict[str, Any], password: str | None = None) -> str:
        """The hash of what shapes a document's pages: `settings` (`Converter.options()`)
        and, when a password is given, a salted slow hash of it (never the password)."""
        if password is not None:
            digest = hashlib.pbkdf2_hmac("sha256", password.encode(), self._open().salt,
                                         PASSWORD_ROUNDS)
            settings = {**settings, "password": digest.hex()}
        return options_hash(settings)

    def plan(self, sources: Iterable[str | Path], options: str, summary: Summary) -> list[Plan]:
        """What to convert under these options (a hash): new, changed and, with `redo_failed`,
        partly failed sources. Sources already done are counted into `summary` as skipped.
        New sources get their stem reserved; documents about to be replaced are marked
        `pending`, so a run that stops midway leaves them to be redone."""
        manifest = self._open()
        plans: list[Plan] = []
        with manifest.transaction():
            for source in sources:
                path = Path(source)
                key = str(path.resolve())
                try:
                    sha = file_sha256(path)
                except OSError as exc:  # the loader reports it on a failed page; tried every run
                    log.warning("%s: cannot be read (%s)", path, exc)
                    sha = ""
                found = manifest.get(key)
                if found is None:
                    stem = unique_stem(path.stem, self._is_stem_taken)
                    manifest.reserve(key, stem)
                    plans.append(Plan(key, path, stem, sha))
                    continue
                stem, entry = found
                redo = self._what_to_redo(entry, stem, sha, options)
                if redo == _SKIP:
                    assert entry is not None
                    log.info("%s: already done, skipped", path)
                    summary.num_skipped += 1
                    summary.add(entry["source"], entry["pages"])
                    continue
                if entry is not None:
                    manifest.put(key, {**entry, "pending": "all" if redo is None else redo})
                plans.append(Plan(key, path, stem, sha, redo_pages=redo))  # type: ignore[arg-type]
        return plans

    def record(self, plan: Plan, entry: dict[str, Any], summary: Summary) -> None:
        """Enter a converted document (its manifest entry, once all its files are in place)
        into the manifest, committed on return, and into `summary`."""
        self._open().put(plan.key, entry)
        log.info("%s -> %s: %s", plan.path, plan.stem,
                 dict(sorted(Counter(p["status"] for p in entry["pages"].values()).items())))
        summary.num_converted += 1
        if plan.redo_pages is not None:
            summary.num_redone_pages += len(plan.redo_pages)
        summary.add(entry["source"], entry["pages"])

    def entry(self, key: str) -> dict[str, Any] | None:
        """The manifest entry of a source (by its key), or None."""
        return self._open().entry(key)

    def save_manifest(self) -> None:
        """Nothing left to do: `record` commits each document. Kept for callers."""

    def _open(self) -> Manifest:
        if self.manifest is None:
            raise RuntimeError("the output folder is not open: use `with OutputFolder(...)`")
        return self.manifest

    def _is_stem_taken(self, stem: str) -> bool:
        return self._open().is_stem_taken(stem) or any(
            (self.root / f"{stem}{suffix}").exists() for suffix in OUTPUT_SUFFIXES)

    def _what_to_redo(self, entry: dict[str, Any] | None, stem: str, sha: str,
                      options: str) -> list[int] | None | str:
        """`_SKIP`, the pages to convert again ([]: none, only files to add), or None: all."""
        if (entry is None or not sha or entry["sha256"] != sha or entry["options"] != options
                or "error" in entry or not (self.root / f"{stem}.json").exists()):
            return None
        failed = sorted(int(n) for n, p in entry["pages"].items()
                        if p["status"] == PageStatus.FAILED.value)
        pending = entry.get("pending")
        if pending == "all":
            return None  # its files were being replaced by another conversion
        redo = set(pending or [])  # a redo that stopped midway: finish it
        if self.redo_failed:
            redo.update(failed)
        if redo:
            return None if _is_whole_failure(entry["pages"], sorted(redo)) else sorted(redo)
        has = set(entry.get("formats") or self._legacy_formats(stem))
        if pending is not None or not self.formats <= has:
            return []  # the document is there; its files are (re)written from it
        return _SKIP

    def _legacy_formats(self, stem: str) -> list[str]:
        """The formats of a document written before entries listed them."""
        found = [f for f in ("html", "preview") if (self.root / f"{stem}.{f}").exists()]
        return [*LEGACY_FORMATS, *found]


def _is_whole_failure(pages: dict[str, Any], redo: list[int]) -> bool:
    """Whether redoing these pages means converting the whole source again: every page
    failed, or one failed as the whole file (it could not be opened, or broke off there:
    a load error that names no page), so pages after it were never listed."""
    if all(p["status"] == PageStatus.FAILED.value for p in pages.values()):
        return True
    for number in redo:
        reason = pages.get(str(number), {}).get("reason") or ""
        if reason.startswith(("load error:", "preprocess error:")) and \
                f", page {number}:" not in reason:
            return True
    return False


