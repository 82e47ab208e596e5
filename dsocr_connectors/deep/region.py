"""Region re-parse: crop a block from the page image, read it again with the fitting prompt.

`plan_regions` looks at a parsed page and its full-resolution image and returns one
`RegionTask` per block worth a second read (see `routing`), each with a ready
`PageRequest` for the crop. The caller batches those requests with other pages' requests
on the engine, then hands each result to `apply_region_result`, which splices the payload
(chart data and its table, SMILES, geometry, a re-read table or equation, or a description)
into the block with its `Provenance`. A failed or empty re-read leaves the first pass as it
was and flags the block; nothing of the first pass is thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from core_model.engines.interface import PageRequest, PageResult
from dsocr_connectors.deep.charts import chart_to_table, parse_chart
from dsocr_connectors.deep.chemistry import find_smiles, read_smiles
from dsocr_connectors.deep.geometry import parse_geometry
from dsocr_connectors.deep.routing import Route, RoutingPolicy, may_route, route
from dsocr_connectors.document import Box, Equation, Figure, Page, Provenance

MIN_CROP_PIXELS = 16  # a crop narrower or shorter than this is not worth a second read
MARGIN = 0.01  # of the page size, added around the box so strokes at the edge survive


@dataclass
class RegionTask:
    page_number: int
    block_index: int  # position in page.blocks
    route: Route
    crop_box: Box  # on the 0..999 grid
    request: PageRequest


def plan_regions(page: Page, image: Image.Image, policy: RoutingPolicy) -> list[RegionTask]:
    """The second-pass tasks for `page`, whose blocks' boxes refer to `image`."""
    if policy.mode == "off":
        return []
    tasks = []
    for position, block in enumerate(page.blocks):
        if not block.boxes or not may_route(block, policy):
            continue  # cutting a crop costs about a millisecond: only for blocks it may serve
        box = _union(block.boxes)
        crop = crop_region(image, box)
        if crop is None:
            continue
        chosen = route(block, crop, policy)
        if chosen is None:
            continue
        request = PageRequest(image=crop, prompt=chosen.prompt, mode=policy.crop_mode,
                              key=("region", page.number, position))
        tasks.append(RegionTask(page.number, position, chosen, box, request))
    return tasks


def crop_region(image: Image.Image, box: Box) -> Image.Image | None:
    """The pixels of `box` (plus a small margin), or None when the box is degenerate."""
    width, height = image.size
    x1, y1, x2, y2 = box.to_pixels(width, height)
    mx, my = MARGIN * width, MARGIN * height
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
    if right - left < MIN_CROP_PIXELS or bottom - top < MIN_CROP_PIXELS:
        return None
    return image.crop((left, top, right, bottom))


def apply_region_result(page: Page, task: RegionTask, result: PageResult,
                        engine: str | None = None) -> None:
    """Splice a second-pass result into its block (in place)."""
    block = page.blocks[task.block_index]
    block.provenance = Provenance(prompt=task.request.prompt, mode=task.request.mode,
                                  crop_box=task.crop_box, engine=engine,
                                  raw_output=result.text, finish_reason=result.finish_reason)
    text = result.text.strip()
    if result.error or not text:
        block.flags.append("reparse_failed" if result.error else "reparse_empty")
        return
    if result.finish_reason in ("length", "repetition"):
        block.flags.append(f"reparse_{result.finish_reason}")
    kind = task.route.kind
    if kind == "table":
        _splice_table(block, text)
        return
    if kind == "equation":
        block.equation = Equation(latex=text.strip("\\[] \n"), display=True)
        return
    figure = block.figure or Figure()
    figure.kind = kind
    block.figure = figure
    if (geometry := parse_geometry(text)) is not None:
        block.geometry = geometry
        figure.kind = "geometry"
        return
    chart = parse_chart(text) if kind != "chemistry" else None
    if chart is not None:
        block.chart = chart
        block.table = chart_to_table(chart)
        figure.kind = "chart"
        return
    smiles = find_smiles(text) if kind == "chemistry" else []
    if smiles:
        block.chemistry = read_smiles(smiles[0])
        if len(smiles) > 1:
            block.flags.append("several_smiles")
        return
    figure.description = text
    if kind in ("chart", "chemistry"):
        block.flags.append(f"{kind}_unparsed")


def _splice_table(block, text: str) -> None:
    from dsocr_connectors.parsing import parse_page

    reread = parse_page(text)
    tables = [b.table for b in reread.blocks if b.table is not None]
    if not tables:
        block.flags.append("reparse_no_table")
        return
    block.table = tables[0]
    block.flags.append("table_reread")


def _union(boxes: list[Box]) -> Box:
    return Box(x1=min(b.x1 for b in boxes), y1=min(b.y1 for b in boxes),
               x2=max(b.x2 for b in boxes), y2=max(b.y2 for b in boxes))
