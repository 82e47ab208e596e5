"""Uploaded files: spooled under our own names, checked, converted, deleted.

Nothing the client sends becomes part of a path: an upload is copied into a fresh
`tempfile.mkstemp` file (`dsocr-upload-XXXXXXXX`, its suffix one of the loaders' known
extensions or none), and the client's file name is only a label in messages and in the
`Document`. The file is deleted when its conversion ends, whatever way it ends.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import loaders
from dsocr_connectors.document import Document, Page
from dsocr_connectors.pipeline import Converter
from loaders.sources import SUPPORTED_EXTENSIONS

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def file_label(filename: str | None) -> str:
    """The client's file name as a label: its last path part, printable, at most 200 chars."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = _UNPRINTABLE.sub("", name).strip()[:200]
    return name or "upload"


def spool(stream: BinaryIO, label: str, folder: str | None = None) -> Path:
    """Copy an upload into a new temporary file of ours; its path.

    The suffix is the label's extension only when it is one the loaders know (it helps them
    open a PDF whose header is damaged); nothing else of the label is used.
    """
    suffix = PurePosixPath(label).suffix.lower()
    fd, name = tempfile.mkstemp(prefix="dsocr-upload-",
                                suffix=suffix if suffix in SUPPORTED_EXTENSIONS else "",
                                dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            stream.seek(0)
            shutil.copyfileobj(stream, out, 1 << 20)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def select_pages(path: Path, label: str, pages: str | None, password: str | None) -> list[int]:
    """The 1-based page numbers of the file at `path` that `pages` selects ("1-3,5"; None: all).

    Raises:
        loaders.LoaderError: the file cannot be read (the message names `label`).
        ValueError: `pages` is malformed.
    """
    total = loaders.count_pages(path, password, name=label)
    if total == 0:
        raise loaders.LoaderError(label, "the file has no pages")
    return loaders.select_pages(pages, total)


def convert_file(converter: Converter, path: Path, label: str,
                 on_page: Callable[[Page], None] | None = None) -> Document:
    """Convert the file at `path`, calling `on_page` as each page is done; then delete it."""
    try:
        pages = []
        for page in converter.iter_pages(path, name=label):
            pages.append(page)
            if on_page is not None:
                on_page(page)
        metadata = {"engine": converter.engine_name, "mode": converter.mode, "ocr": converter.ocr}
        return Document(source=label, pages=pages, metadata=metadata)
    finally:
        discard(path)


def discard(path: Path) -> None:
    """Delete an upload (gone already is fine)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
