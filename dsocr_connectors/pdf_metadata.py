"""A PDF's document information as PyMuPDFLoader reports it: lower-case keys, ISO dates.

Keys: `producer`, `creator`, `creationdate`, `moddate` (ISO 8601 when the PDF date parses,
else as written), `title`, `author`, `subject`, `keywords`, `format` ("PDF 1.7"). All are
strings ("" when the PDF has none), so every vector store takes them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

KEYS = ("producer", "creator", "creationdate", "moddate", "title", "author", "subject",
        "keywords", "format")
_PDF_DATE = re.compile(r"D:(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?(Z|[+-]\d\d'?\d\d'?)?")


def iso_date(value: str) -> str:
    """A PDF date ("D:20250101093000+01'00'") as ISO 8601; other text unchanged."""
    match = _PDF_DATE.match(value.strip())
    if not match:
        return value.strip()
    year, month, day, hour, minute, second, zone = match.groups()
    tz = None
    if zone == "Z":
        tz = timezone.utc
    elif zone:
        digits = zone.replace("'", "")
        offset = timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5] or 0))
        tz = timezone(offset if digits[0] == "+" else -offset)
    try:
        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                          int(minute or 0), int(second or 0), tzinfo=tz)
    except ValueError:
        return value.strip()
    return moment.isoformat()


def pdf_metadata(source: Any, password: str | None = None) -> dict[str, str]:
    """The document information of a PDF (path or bytes); {} for anything else or on error."""
    from loaders.mupdf import pymupdf

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if b"%PDF-" not in bytes(source[:1024]):
                return {}
            doc = pymupdf.open(stream=bytes(source), filetype="pdf")
        elif isinstance(source, (str, Path)) and Path(source).is_file():
            with open(source, "rb") as handle:
                if b"%PDF-" not in handle.read(1024):
                    return {}
            doc = pymupdf.open(str(source))
        else:
            return {}
    except Exception:  # an unreadable PDF: its pages already say why
        return {}
    with doc:
        if doc.needs_pass and not (password and doc.authenticate(password)):
            return {}
        raw = {k.lower(): v for k, v in (doc.metadata or {}).items()}
    info = {key: str(raw.get(key) or "").strip() for key in KEYS}
    for key in ("creationdate", "moddate"):
        info[key] = iso_date(info[key])
    return info
