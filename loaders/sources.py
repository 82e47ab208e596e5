"""Where pages come from: paths, folders, globs, bytes and file-likes, and what kind they are.

`iter_sources` turns what a user names into a sorted stream of file paths; `detect_kind`
tells a PDF from an image by its first bytes (the extension is only a fallback);
`read_source` normalises a path, bytes or binary file-like into one `Source`.
A URL (`s3://`, `gs://`, `https://`, `memory://`, any fsspec protocol) is read whole
through fsspec (`read_url`); its protocol's package must be installed (`s3fs`, `gcsfs`,
`aiohttp` for http: the `s3`, `gcs` and `http` extras).
Nothing here opens a PDF or decodes an image.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Union

from loaders.page import LoaderError

logger = logging.getLogger(__name__)

Kind = Literal["pdf", "image"]
SourceLike = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

# Pillow's own bomb limit, so a file pillow opens by default opens here too (~268 MB as RGB).
DEFAULT_MAX_PIXELS = 89_478_485

PDF_EXTENSIONS = frozenset({".pdf"})
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".webp", ".bmp", ".dib", ".gif"}
)
SUPPORTED_EXTENSIONS = PDF_EXTENSIONS | IMAGE_EXTENSIONS

_HEAD_BYTES = 1024  # the PDF header may follow up to 1 KiB of junk
_GLOB_CHARS = frozenset("*?[")
_PDF_OBJECT = re.compile(rb"(?:^|\s)\d+\s+\d+\s+obj\b")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}


def is_url(source: object) -> bool:
    """Whether `source` is a URL string with a protocol other than `file://`."""
    if not isinstance(source, str):
        return False
    match = _URL.match(source)
    return match is not None and match.group(1).lower() != "file"


def read_url(url: str) -> bytes:
    """The bytes at `url`, read through fsspec.

    Raises:
        LoaderError: naming the URL: fsspec or the protocol's package is missing, or the
            file cannot be read.
    """
    try:
        import fsspec
    except ImportError as error:
        raise LoaderError(url, "reading URLs needs fsspec: pip install fsspec") from error
    protocol = url.split("://", 1)[0].lower()
    try:
        with fsspec.open(url, "rb") as handle:
            return handle.read()
    except ImportError as error:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 'dsocr-connectors[{extra}]'" if extra else str(error)
        raise LoaderError(url, f"{protocol}:// needs a package fsspec uses: {hint}") from error
    except FileNotFoundError as error:
        raise LoaderError(url, "no such file") from error
    except (OSError, ValueError) as error:
        raise LoaderError(url, f"cannot read: {error}") from error


@dataclass
class Source:
    """One input, normalised: a path to read lazily, or bytes already in memory."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def head(self, size: int = _HEAD_BYTES) -> bytes:
        """The first `size` bytes; raises LoaderError naming the file when it cannot be read."""
        if self.data is not None:
            return self.data[:size]
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                return f.read(size)
        except OSError as e:
            raise LoaderError(self.name, f"cannot read: {e.strerror or e}") from e


def read_source(source: SourceLike, name: str | None = None) -> Source:
    """Normalise a path, bytes or binary file-like into a `Source`.

    Paths are not read here (PDFs stay on disk and are read page by page); bytes and
    file-likes are held in memory. Raises LoaderError for a missing path, a folder,
    an unmatched glob or an unreadable file-like.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Source(name=name or "<bytes>", data=bytes(source))
    if is_url(source):
        return Source(name=name or str(source), data=read_url(str(source)))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(source)
        if path.is_dir():
            raise LoaderError(label, "is a folder; list its files with iter_sources()")
        if not path.exists():
            if _GLOB_CHARS & set(str(source)):
                raise LoaderError(label, "no supported file matches this pattern")
            raise LoaderError(label, "no such file")
        return Source(name=label, path=path)
    if hasattr(source, "read"):
        label = name or str(getattr(source, "name", "") or "<stream>")
        try:
            data = source.read()
        except (OSError, ValueError) as e:
            raise LoaderError(label, f"cannot read stream: {e}") from e
        if not isinstance(data, (bytes, bytearray)):
            raise LoaderError(label, "stream is not binary; open the file with 'rb'")
        return Source(name=label, data=bytes(data))
    raise TypeError(f"source must be a path, bytes or a binary file-like, not {type(source)!r}")


def detect_kind(source: SourceLike | Source, name: str | None = None) -> Kind:
    """Tell a PDF from a supported image by magic bytes, the extension only as a fallback.

    Args:
        source: a path, bytes, a binary file-like (its position is restored) or a `Source`.
        name: how to name the input in errors (default: the path or "<bytes>").

    Returns:
        "pdf" or "image".

    Raises:
        LoaderError: the input is empty, unreadable, or neither a PDF nor a supported image.
    """
    if hasattr(source, "read") and hasattr(source, "seek"):
        position = source.tell()
        head = source.read(_HEAD_BYTES)
        source.seek(position)
        src = Source(name=name or str(getattr(source, "name", "") or "<stream>"), data=head)
    elif isinstance(source, Source):
        src = source
    else:
        src = read_source(source, name)
    head = src.head()
    if not head:
        raise LoaderError(src.name, "empty file (0 bytes)")
    kind = kind_from_magic(head)
    other = describe_content(head) if kind is None else None
    if kind is None and src.path is not None:
        kind = kind_from_extension(src.path)  # e.g. a PDF whose header was damaged
        if kind == "pdf" and other:
            raise LoaderError(src.name, f"not a PDF: it looks like {other}")
    if kind is None:
        what = f"it looks like {other}" if other else f"starts with {head[:8]!r}"
        raise LoaderError(src.name, f"unsupported file type ({what})")
    return kind


def kind_from_magic(head: bytes) -> Kind | None:
    """The kind announced by a file's first bytes, or None when they match nothing known."""
    if b"%PDF-" in head[:_HEAD_BYTES]:
        return "pdf"
    image_magics = (
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",  # JPEG
        b"II*\x00",  # TIFF, little-endian
        b"MM\x00*",  # TIFF, big-endian
        b"II+\x00",  # BigTIFF
        b"MM\x00+",
        b"GIF87a",
        b"GIF89a",
        b"BM",
    )
    if head.startswith(image_magics) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if _PDF_OBJECT.search(head):
        return "pdf"  # a PDF whose header is damaged: mupdf may still repair it
    return None


_ZIP_KINDS = (  # what a ZIP archive's first member names tell
    (b"word/", "a Word document (DOCX)"),
    (b"xl/", "an Excel workbook (XLSX)"),
    (b"ppt/", "a PowerPoint file (PPTX)"),
    (b"application/epub", "an EPUB book"),
    (b"application/vnd.oasis", "an OpenDocument file"),
)
_OTHER_MAGICS = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (DOC, XLS or PPT)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"8BPS", "a Photoshop file"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image (not supported: convert it to PNG)"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
)


def describe_content(head: bytes) -> str | None:
    """What a file that is neither a PDF nor a supported image looks like, from its first
    bytes ("an HTML document", "a ZIP archive", ...), or None when nothing is recognised."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        return "an HTML document (a web page, or the error page of a failed download)"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "an SVG image (not supported)" if b"<svg" in text else "an XML document"
    if head.startswith(b"PK\x03\x04"):
        return next((what for mark, what in _ZIP_KINDS if mark in head), "a ZIP archive")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
            return "a HEIC/AVIF image (not supported: convert it to PNG or JPEG)"
        return "a video (MP4 or QuickTime)"
    for magic, what in _OTHER_MAGICS:
        if head.startswith(magic):
            return what
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a cut multi-byte character at the end is fine
        if exc.start < len(head) - 3:
            return None
        decoded = head[: exc.start].decode("utf-8")
    if decoded and all(c.isprintable() or c in "\t\r\n\f" for c in decoded):
        return "a text file"
    return None


def kind_from_extension(path: Path) -> Kind | None:
    suffix = path.suffix.lower()
    if suffix in PDF_EXTENSIONS:
        return "pdf"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


def iter_sources(
    paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = SUPPORTED_EXTENSIONS,
) -> Iterator[Path]:
    """Yield the files named by paths, folders and glob patterns, each once, in a stable order.

    - A file named explicitly is yielded whatever its extension (an unsupported one then
      loads as an error page, so nothing is dropped silently), and so is a path that does
      not exist (it loads as a "no such file" error page).
    - A folder is walked (recursively unless `recursive=False`), names sorted, files of a
      folder before its subfolders; only files with one of `extensions` are kept, and
      hidden files and folders (name starting with ".") are skipped.
    - A URL (`s3://bucket/a.pdf`, `https://...`) is yielded as it is, a `str`.
    - A glob pattern (`*`, `?`, `[`; `**` when recursive) is expanded in sorted order;
      matched folders are walked and matched files are filtered like a folder's. A pattern
      that matches nothing is yielded as is and loads as a "no file matches" error page.

    Args:
        paths_or_globs: one path or pattern, or an iterable of them.
        recursive: walk subfolders, and let `**` span folders in patterns.
        extensions: suffixes kept in folders and pattern matches (case-insensitive).
    """
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    wanted = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    seen: set[Path] = set()
    for item in paths_or_globs:
        if is_url(item):  # read through fsspec when its pages are loaded
            yield item  # type: ignore[misc]
            continue
        for path in _expand(Path(item), str(item), recursive, wanted):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path


def _expand(path: Path, text: str, recursive: bool, wanted: frozenset[str]) -> Iterator[Path]:
    if path.is_dir():
        yield from _walk(path, recursive, wanted)
    elif path.exists() or not (_GLOB_CHARS & set(text)):
        yield path
    else:
        matched = False
        for match in sorted(glob.glob(text, recursive=recursive)):
            found = Path(match)
            if found.is_dir():
                for inner in _walk(found, recursive, wanted):
                    matched = True
                    yield inner
            elif found.suffix.lower() in wanted:
                matched = True
                yield found
        if not matched:
            yield path


def _walk(folder: Path, recursive: bool, wanted: frozenset[str]) -> Iterator[Path]:
    found_any = False
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for file in sorted(files):
            if not file.startswith(".") and Path(file).suffix.lower() in wanted:
                found_any = True
                yield Path(root) / file
    if not found_any:
        logger.warning("%s: no supported files in this folder", folder)
