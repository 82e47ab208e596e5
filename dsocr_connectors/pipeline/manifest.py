"""The output folder's manifest: one SQLite database (WAL mode) in `OUT/.dsocr/`.

Its place is a hidden folder no input name can produce (a document named `manifest.pdf`
writes `manifest.json`, nothing more). One row per source:
- `key`: the source's resolved path;
- `stem`: its output name, reserved when the source is first planned so that a resumed
  run uses it again; unique case-insensitively (`stem_folded`);
- `entry`: JSON, NULL until the document's files are all in place: `source`, `stem`,
  `sha256` of its bytes, `options` (hash of what shapes the pages), `formats` written,
  `pages` (number -> status and reason), and `pending` while its files are being replaced
  or `error` when its conversion raised (neither counts as done).

Each write is one transaction (`synchronous=FULL`: committed means on disk), so recording
a document costs about a millisecond whatever the folder's size, where rewriting a JSON
manifest cost time in proportion to it (`benchmarks/manifest_store.py`). A folder of the
earlier layout (`OUT/manifest.json`, version 1) is imported once, and that file is moved to
`.dsocr/manifest-v1.json`. WAL needs every process that opens the database on one host:
the run that holds the folder's lock, and readers on that host (`read_manifest`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRIVATE = ".dsocr"
DATABASE = "manifest.sqlite"
LEGACY = "manifest.json"
LEGACY_MOVED = "manifest-v1.json"
VERSION = 2
LEGACY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    key TEXT PRIMARY KEY,
    stem TEXT NOT NULL,
    stem_folded TEXT NOT NULL,
    entry TEXT
);
CREATE INDEX IF NOT EXISTS documents_stem ON documents (stem_folded);
"""


class Manifest:
    """The manifest of one output folder, open for reading and writing.

    Only the run that holds the folder's lock opens it this way (`OutputFolder`); others
    read with `read_manifest`.

    Args:
        root: the output folder; `root/.dsocr/` is created if missing.

    Raises:
        ValueError: the database is of an unknown version, or `root/manifest.json` is
            there from an earlier version but is not a readable manifest.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.private = root / PRIVATE
        self.private.mkdir(parents=True, exist_ok=True)
        path = self.private / DATABASE
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30,
                                  check_same_thread=False)  # used by one thread at a time
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)  # idempotent; before any transaction (it commits)
            with self.transaction():
                version = self._meta("version")
                if version is None:  # a new folder, or one of the earlier layout
                    legacy = root / LEGACY
                    records = _read_legacy(legacy) if legacy.exists() else None
                    self._set_meta("version", str(VERSION))
                    self._set_meta("salt", os.urandom(16).hex())
                    if records is not None:
                        self._import(records)
                elif version != str(VERSION):
                    raise ValueError(f"{path}: manifest version {version} unknown (this dsocr "
                                     f"reads version {VERSION}); use the dsocr that wrote it")
            if self._meta("legacy") == "imported":
                with self.transaction():
                    self._move_legacy()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction (one fsync); nested uses join the outer one."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @property
    def salt(self) -> bytes:
        """This folder's random salt (for hashing a password into the options)."""
        return bytes.fromhex(self._meta("salt") or "")

    def get(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        """The stem and entry (None while only reserved) of a source, or None if unknown."""
        row = self.db.execute("SELECT stem, entry FROM documents WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return row[0], (json.loads(row[1]) if row[1] is not None else None)

    def entry(self, key: str) -> dict[str, Any] | None:
        """A source's entry, or None."""
        found = self.get(key)
        return found[1] if found else None

    def is_stem_taken(self, stem: str) -> bool:
        """Whether a source already has this stem (case-insensitively)."""
        row = self.db.execute("SELECT 1 FROM documents WHERE stem_folded = ? LIMIT 1",
                              (stem.casefold(),)).fetchone()
        return row is not None

    def reserve(self, key: str, stem: str) -> None:
        """Give a source its stem before it is converted; its entry stays empty."""
        self.db.execute(
            "INSERT INTO documents (key, stem, stem_folded) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET stem = excluded.stem, "
            "stem_folded = excluded.stem_folded",
            (key, stem, stem.casefold()),
        )

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store a source's entry (committed on return unless inside `transaction`)."""
        stem = entry["stem"]
        self.db.execute(
            "INSERT INTO documents (key, stem, stem_folded, entry) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET stem = excluded.stem, "
            "stem_folded = excluded.stem_folded, entry = excluded.entry",
            (key, stem, stem.casefold(), json.dumps(entry, ensure_ascii=False)),
        )

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every source with an entry: (key, entry)."""
        for key, text in self.db.execute(
            "SELECT key, entry FROM documents WHERE entry IS NOT NULL ORDER BY rowid"
        ):
            yield key, json.loads(text)

    def _meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def _import(self, legacy: dict[str, Any]) -> None:
        for key, entry in legacy["documents"].items():
            self.put(key, entry)
        self._set_meta("legacy", "imported")
        log.info("%s: imported the manifest of %d documents (earlier layout)",
                 self.root / LEGACY, len(legacy["documents"]))

    def _move_legacy(self) -> None:
        """Move the imported `manifest.json` out of the way of a document of that name."""
        source = self.root / LEGACY
        if source.exists():
            os.replace(source, self.private / LEGACY_MOVED)
        self._set_meta("legacy", "moved")


def _read_legacy(path: Path) -> dict[str, Any]:
    """The earlier layout's manifest (version 1), or a ValueError saying why it cannot be."""
    hint = (f"move it away to start a new manifest in {path.parent / PRIVATE} (documents "
            "already in the folder are then converted again, under new names)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable manifest ({exc}); {hint}") from exc
    if isinstance(manifest, dict) and "pages" in manifest and "source" in manifest:
        raise ValueError(
            f"{path}: holds the converted document of an input named manifest.*, which an "
            f"earlier dsocr let overwrite its manifest; the folder's record is lost; {hint}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("documents"), dict):
        raise ValueError(f"{path}: not a dsocr manifest; {hint}")
    if manifest.get("version") != LEGACY_VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version')!r} unknown")
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of an output folder as `{"version": 2, "documents": {key: entry}}`,
    read-only (safe while a run writes it). A folder of the earlier layout is read from its
    `manifest.json`; a folder with no manifest gives no documents."""
    root = Path(root)
    path = root / PRIVATE / DATABASE
    documents: dict[str, Any] | None = None
    if path.exists():
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() and \
                    db.execute("SELECT 1 FROM meta WHERE name = 'version'").fetchone():
                rows = db.execute(
                    "SELECT key, entry FROM documents WHERE entry IS NOT NULL ORDER BY rowid")
                documents = {key: json.loads(text) for key, text in rows}
        finally:
            db.close()
    if documents is None:  # never opened by this version
        legacy = root / LEGACY
        documents = _read_legacy(legacy)["documents"] if legacy.exists() else {}
    return {"version": VERSION, "documents": documents}
