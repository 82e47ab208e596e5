"""Generate the example inputs: a born-digital PDF, the same pages as a scan, and a page image.

    python examples/make_examples.py   # rewrites examples/*.pdf and examples/page.png

born_digital.pdf has a title, numbered section headings, paragraphs, a ruled table that
runs across both pages with its header row repeated, a vector bar chart and captions;
its text layer is real, so it converts without a model. scanned.pdf holds the same pages
as slightly tilted, speckled greyscale images and no text at all: only a model reads it.
The output is byte-for-byte deterministic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image

HERE = Path(__file__).parent
WIDTH, HEIGHT, MARGIN = 595, 842, 64
INTRO = (
    "This report summarises water quality measured at thirty river sites during the "
    "spring campaign. Each site was sampled weekly; the table lists the mean nitrate "
    "concentration and whether the site met the 11.3 mg/L guideline."
)
RESULTS = (
    "Sites downstream of the treatment works show the highest concentrations. "
    "Figure 1 compares the four worst sites with the guideline value."
)
HEADER = ["Site", "Samples", "Nitrate (mg/L)", "Status"]
NITRATE = [round(3.0 + 0.35 * n, 2) for n in range(1, 31)]
ROWS = [[f"R-{n:02d}", str(8 + n % 3), f"{v:.2f}", "ok" if v <= 11.3 else "over"]
        for n, v in enumerate(NITRATE, 1)]
FIXED_METADATA = {"title": "Spring Water Quality Report", "author": "dsocr-connectors",
                  "creationDate": "D:20250101000000Z", "modDate": "D:20250101000000Z"}


def text(page, y: float, body: str, size: float = 11, bold: bool = False, height=60) -> float:
    """Write wrapped text from `y` down; returns the y below it."""
    box = pymupdf.Rect(MARGIN, y, WIDTH - MARGIN, y + height)
    page.insert_textbox(box, body, fontsize=size, fontname="hebo" if bold else "helv")
    return y + height


def table(page, y: float, rows: list[list[str]]) -> float:
    """A ruled table with a bold header row; returns the y below it."""
    widths = [90, 90, 130, 90]
    for r, row in enumerate([HEADER, *rows]):
        x = MARGIN
        for width, cell in zip(widths, row, strict=True):
            rect = pymupdf.Rect(x, y + 20 * r, x + width, y + 20 * (r + 1))
            page.draw_rect(rect, color=(0, 0, 0), width=0.6)
            page.insert_text((x + 5, rect.y1 - 6), cell, fontsize=10,
                             fontname="hebo" if r == 0 else "helv")
            x += width
    return y + 20 * (len(rows) + 1) + 12


def bar_chart(page, y: float, values: list[tuple[str, float]], limit: float) -> float:
    """Vertical bars over an axis with a dashed guideline; returns the y below it."""
    base, scale = y + 170, 12.0
    page.draw_line((MARGIN + 30, y), (MARGIN + 30, base), color=(0, 0, 0))
    page.draw_line((MARGIN + 30, base), (MARGIN + 330, base), color=(0, 0, 0))
    for i, (label, value) in enumerate(values):
        x = MARGIN + 60 + 70 * i
        page.draw_rect(pymupdf.Rect(x, base - value * scale, x + 40, base),
                       color=None, fill=(0.25, 0.45, 0.7))
        page.insert_text((x + 4, base + 14), label, fontsize=9)
    page.draw_line((MARGIN + 30, base - limit * scale), (MARGIN + 330, base - limit * scale),
                   color=(0.8, 0.1, 0.1), dashes="[4] 0")
    return base + 24


def born_digital() -> pymupdf.Document:
    doc = pymupdf.open()
    page = doc.new_page(width=WIDTH, height=HEIGHT)
    y = text(page, MARGIN, "Spring Water Quality Report", size=20, bold=True, height=36)
    y = text(page, y, "1. Introduction", size=14, bold=True, height=24)
    y = text(page, y, INTRO, height=64)
    y = text(page, y, "2. Measurements", size=14, bold=True, height=24)
    y = text(page, y, "Table 1: Nitrate by site.", size=10, height=18)
    table(page, y, ROWS[:24])
    page = doc.new_page(width=WIDTH, height=HEIGHT)
    y = text(page, MARGIN, "Table 1 (continued).", size=10, height=18)
    y = table(page, y, ROWS[24:])
    y = text(page, y, "3. Results", size=14, bold=True, height=24)
    y = text(page, y, RESULTS, height=48)
    y = bar_chart(page, y, [(row[0], float(row[2])) for row in ROWS[26:]], limit=11.3)
    text(page, y, "Figure 1: Nitrate at sites R-27 to R-30; dashed line: guideline.", size=10)
    doc.set_metadata(FIXED_METADATA)
    return doc


def scanned(doc: pymupdf.Document, dpi: int = 110) -> pymupdf.Document:
    """Each page as a tilted, speckled greyscale JPEG on an otherwise empty page."""
    rng = np.random.default_rng(7)
    scan = pymupdf.open()
    for number, page in enumerate(doc):
        pixmap = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        image = Image.frombytes("L", (pixmap.width, pixmap.height), pixmap.samples)
        image = image.rotate(0.6 - 1.1 * number, resample=Image.BICUBIC, fillcolor=255)
        pixels = np.asarray(image).copy()
        specks = rng.random(pixels.shape) < 0.0008
        pixels[specks] = rng.integers(0, 160, int(specks.sum()))
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=55)
        target = scan.new_page(width=page.rect.width, height=page.rect.height)
        target.insert_image(target.rect, stream=out.getvalue())
    scan.set_metadata({**FIXED_METADATA, "title": "Spring Water Quality Report (scan)"})
    return scan


def main(out: Path = HERE) -> None:
    doc = born_digital()
    doc.save(out / "born_digital.pdf", garbage=4, deflate=True, no_new_id=True)
    scanned(doc).save(out / "scanned.pdf", garbage=4, deflate=True, no_new_id=True)
    pixmap = doc[0].get_pixmap(dpi=96, colorspace=pymupdf.csGRAY)
    image = Image.frombytes("L", (pixmap.width, pixmap.height), pixmap.samples)
    image.quantize(16).save(out / "page.png", optimize=True)
    for name in ("born_digital.pdf", "scanned.pdf", "page.png"):
        print(f"{name}: {(out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
