"""Layout previews (the page image with its block boxes drawn) and figure crops.

The boxes are drawn on the image given, scaled from the 0..999 grid to its pixel size, so
any rendering of the page works (the image the model saw, or another resolution of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from dsocr_connectors.document import Block, BlockType, Document, Figure, Page
from dsocr_connectors.export.colors import type_color
from dsocr_connectors.export.markdown import figure_crop_name


def draw_layout(page: Page, image: Image.Image, *, width: int = 3) -> Image.Image:
    """A copy of `image` with every block box outlined in its type colour and labelled.

    Args:
        page: the parsed page.
        image: the page image (any size; boxes are scaled to it).
        width: outline width in pixels.
    """
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    for block in page.blocks:
        colour = type_color(block.type)
        for box in block.boxes:
            x1, y1, x2, y2 = box.to_pixels(canvas.width, canvas.height)
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
            caption = f"{block.index} {block.label or block.type.value}"[:40]
            left, top, right, bottom = draw.textbbox((x1, y1), caption)
            lift = bottom - top + 2
            draw.rectangle((left, top - lift, right, bottom - lift), fill=colour)
            draw.text((x1, y1 - lift), caption, fill="white")
    return canvas


def save_previews(
    doc: Document,
    images: Mapping[int, Image.Image] | Sequence[Image.Image],
    out_dir: str | Path,
) -> list[Path]:
    """Write `page-NNNN-layout.png` for each page that has an image; returns the paths.

    Args:
        doc: the parsed document.
        images: page images by page number (a mapping) or in page order (a sequence).
        out_dir: the folder to write to (created if needed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_number = (
        dict(images)
        if isinstance(images, Mapping)
        else {p.number: im for p, im in zip(doc.pages, images, strict=False)}
    )
    paths = []
    for page in doc.pages:
        image = by_number.get(page.number)
        if image is None:
            continue
        path = out / f"page-{page.number:04d}-layout.png"
        draw_layout(page, image).save(path)
        paths.append(path)
    return paths


def figure_crop(block: Block, image: Image.Image) -> Image.Image | None:
    """The part of `image` (any rendering of the page) inside a figure block's box(es).

    A figure with several boxes is cropped to the box that encloses them all; None when
    the block has no box or its box is empty.
    """
    if not block.boxes:
        return None
    corners = [box.to_pixels(image.width, image.height) for box in block.boxes]
    left = min(c[0] for c in corners)
    top = min(c[1] for c in corners)
    right = max(c[2] for c in corners)
    bottom = max(c[3] for c in corners)
    if right - left < 1 or bottom - top < 1:
        return None
    return image.crop((round(left), round(top), round(right), round(bottom)))


def figure_crops(page: Page, image: Image.Image) -> list[tuple[Block, str, Image.Image]]:
    """Each figure block's crop out of `image`, with its file name (`figure_crop_name`).

    A figure with several boxes is cropped to the box that encloses them all; figures
    whose box is empty are skipped.
    """
    crops = []
    for block in page.blocks:
        if block.type is not BlockType.FIGURE:
            continue
        crop = figure_crop(block, image)
        if crop is not None:
            crops.append((block, figure_crop_name(page, block), crop))
    return crops


def save_figure_crops(page: Page, image: Image.Image, out_dir: str | Path) -> list[Path]:
    """Crop every figure block's box(es) out of `image`, save them, set `Figure.crop_path`
    (see `figure_crops`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for block, name, crop in figure_crops(page, image):
        path = out / name
        crop.save(path)
        if block.figure is None:
            block.figure = Figure()
        block.figure.crop_path = str(path)
        paths.append(path)
    return paths
