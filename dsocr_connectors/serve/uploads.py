"""Uploaded files: their form fields checked, spooled under our own names, converted, deleted.

Nothing the client sends becomes part of a path: an upload is copied into a fresh
`tempfile.mkstemp` file (`dsocr-upload-XXXXXXXX`, its suffix one of the loaders' known
extensions or none), and the client's file name is only a label in messages and in the
`Document`. The file is deleted when its conversion ends, whatever way it ends.

This module holds everything a conversion needs (the loaders, pymupdf, the pipeline); the
routes import it on the first conversion, so a server used only for chat completions (the
benchmark) runs without them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import loaders
from core_model.engines.interface import MODES
from dsocr_connectors.document import Document, Page
from dsocr_connectors.pipeline import Converter
from dsocr_connectors.pipeline.converter import OCR_CHOICES
from dsocr_connectors.serve.errors import ApiError
from dsocr_connectors.serve.gate import RequestEngine
from loaders.sources import SUPPORTED_EXTENSIONS

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
FIELDS = ("mode", "pages", "dpi", "ocr", "prompt", "max_new_tokens", "rerun_mode", "reparse",
          "password", "async")
MAX_FIELD_BYTES = 64 * 1024


@dataclass
class ConvertSettings:
    """The form fields of a conversion, checked."""

    mode: str = "gundam"
    pages: str | None = None
    dpi: int = 144
    ocr: str = "auto"
    prompt: str | None = None
    max_new_tokens: int | None = None
    rerun_mode: str | None = None
    reparse: str = "charts"
    password: str | None = None
    run_async: str = "auto"

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> ConvertSettings:
        """Raises ApiError (400) for an unknown field or a bad value, naming it."""
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; the fields are file, "
                                + ", ".join(FIELDS))
        settings = cls(
            mode=_choice(fields, "mode", MODES, "gundam"),
            pages=fields.get("pages") or None,
            dpi=_integer(fields, "dpi", 144, 36, 600),
            ocr=_choice(fields, "ocr", OCR_CHOICES, "auto"),
            prompt=fields.get("prompt") or None,
            max_new_tokens=_integer(fields, "max_new_tokens", None, 1, 1 << 20),
            rerun_mode=_choice(fields, "rerun_mode", MODES, None),
            reparse=_choice(fields, "reparse", ("off", "charts", "all"), "charts"),
            password=fields.get("password") or None,
            run_async=_choice(fields, "async", ("auto", "true", "false"), "auto"),
        )
        return settings

    def converter_options(self) -> dict[str, Any]:
        return dict(mode=self.mode, dpi=self.dpi, ocr=self.ocr, prompt=self.prompt,
                    max_new_tokens=self.max_new_tokens, rerun_mode=self.rerun_mode,
                    reparse=self.reparse, password=self.password)


def _choice(fields: dict[str, str], name: str, choices: tuple[str, ...], default: Any) -> Any:
    value = fields.get(name)
    if not value:
        return default
    if value not in choices:
        raise ApiError(400, f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def _integer(fields: dict[str, str], name: str, default: int | None, low: int, high: int
             ) -> int | None:
    value = fields.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name}={number} is out of range ({low} to {high})")
    return number


def make_converter(engine: RequestEngine, settings: ConvertSettings, pages: list[int],
                   max_in_flight: int) -> Converter:
    """The request's `Converter` over its view of the shared engine (400 for bad options)."""
    try:
        return Converter(engine=engine, pages=pages, max_in_flight=max_in_flight, progress=False,
                         **settings.converter_options())
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


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
    """Convert the file at `path`, calling `on_page` as each page is done; then delete it
    and close the converter (the worker processes it started; the shared engine is not its
    own). A converter refused before this started none: nothing to close."""
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
        converter.close()


def discard(path: Path) -> None:
    """Delete an upload (gone already is fine)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
