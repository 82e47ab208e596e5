"""Stand-ins for parts built on other branches, installed only where the real one is missing.

`install()` fills `loaders.iter_pages`/`iter_sources` (pymupdf + pillow), the parser
`dsocr_connectors.parsing.parse_page` and the Markdown exporter with small test doubles, so
the pipeline's tests run before those branches merge; after the merge the real parts are used.
The CLI tests run `python tests/_standins.py convert ...`, which installs them and runs `dsocr`.
"""

from __future__ import annotations

import io
import re
import sys
import types
from pathlib import Path

import pymupdf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsocr_connectors.document import Block, BlockType, Box, Page  # noqa: E402
from loaders.page import LayerTable, LoadedPage, LoaderError, TextLayer, TextSpan  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def iter_pages(source, *, dpi=144, pages=None, password=None, max_pixels=None, name=None):
    """Minimal loader: PDF pages rendered by pymupdf with their text layer, or one image."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in IMAGE_SUFFIXES:
        yield LoadedPage(source=label, number=1, total_pages=1,
                         image=Image.open(io.BytesIO(data)).convert("RGB"))
        return
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:
        raise LoaderError(label, f"not a readable PDF ({exc})") from exc
    wanted = pages or range(1, doc.page_count + 1)
    for number in wanted:
        page = doc[number - 1]
        pix = page.get_pixmap(dpi=dpi)
        image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
        yield LoadedPage(
            source=label, number=number, total_pages=doc.page_count, image=image,
            width_pt=page.rect.width, height_pt=page.rect.height, text_layer=_text_layer(page),
        )


def _text_layer(page) -> TextLayer:
    spans = []
    for b_index, block in enumerate(page.get_text("dict")["blocks"]):
        for l_index, line in enumerate(block.get("lines", [])):
            for span in line["spans"]:
                spans.append(TextSpan(
                    text=span["text"], bbox=tuple(span["bbox"]), font=span["font"],
                    size=span["size"], is_bold=bool(span["flags"] & 16) or "Bold" in span["font"],
                    block=b_index, line=l_index,
                ))
    tables = []
    for table in page.find_tables().tables:
        tables.append(LayerTable(bbox=tuple(table.bbox), rows=table.extract(),
                                 header_rows=1 if table.header and not table.header.external else 0))
    text = page.get_text()
    return TextLayer(spans=spans, text=text, is_usable=len(text.strip()) >= 40, tables=tables)


def iter_sources(paths, *, recursive=True):
    for path in map(Path, paths):
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(p for p in path.glob(pattern)
                              if p.suffix.lower() in IMAGE_SUFFIXES | {".pdf"})
        else:
            yield path


_BLOCK = re.compile(r"<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>\n?(.*?)(?=<\|ref\|>|\Z)", re.S)
_TYPES = {"title": BlockType.TITLE, "sub_title": BlockType.SECTION_HEADING,
          "text": BlockType.TEXT, "table": BlockType.TABLE, "image": BlockType.FIGURE,
          "equation": BlockType.EQUATION}


def parse_page(raw, *, number=1, image_size=None, prompt=None):
    """Test parser: grounding blocks by regex; "truncated" when a tag is left open."""
    blocks = []
    for i, (label, det, content) in enumerate(_BLOCK.findall(raw)):
        nums = [int(n) for n in re.findall(r"\d+", det)][:4]
        boxes = [Box(x1=nums[0], y1=nums[1], x2=nums[2], y2=nums[3])] if len(nums) == 4 else []
        blocks.append(Block(index=i, type=_TYPES.get(label, BlockType.UNKNOWN), label=label,
                            boxes=boxes, content=content.strip()))
    if not blocks and raw.strip():
        blocks.append(Block(index=0, type=BlockType.TEXT, label="", content=raw.strip()))
    flags = ["truncated"] if raw.count("<|det|>") > raw.count("<|/det|>") else []
    width, height = image_size or (None, None)
    return Page(number=number, blocks=blocks, flags=flags, raw_output=raw, prompt=prompt,
                image_width=width, image_height=height)


def page_to_markdown(page, **options):
    return "\n\n".join(b.content for b in page.blocks if b.content)


def document_to_markdown(document, **options):
    return "\n\n".join(page_to_markdown(p) for p in document.pages) + "\n"


def install() -> None:
    import loaders

    if not hasattr(loaders, "iter_pages"):
        loaders.iter_pages = iter_pages
    if not hasattr(loaders, "iter_sources"):
        loaders.iter_sources = iter_sources
    _module_if_missing("dsocr_connectors.parsing", parse_page=parse_page)
    _module_if_missing("dsocr_connectors.export", __path__=[])
    _module_if_missing("dsocr_connectors.export.markdown", page_to_markdown=page_to_markdown,
                       document_to_markdown=document_to_markdown)


def _module_if_missing(name: str, **attrs) -> None:
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


if __name__ == "__main__":
    install()
    from dsocr_connectors.cli import main

    sys.exit(main(sys.argv[1:]))
