"""Region re-parse: which blocks get a second read, and how results are spliced back."""

import random
import sys
from pathlib import Path

from PIL import Image

from core_model.engines.interface import PageResult
from dsocr_connectors.deep.region import apply_region_result, crop_region, plan_regions
from dsocr_connectors.deep.routing import RoutingPolicy
from dsocr_connectors.document import Block, BlockType, Box, Page

sys.path.insert(0, str(Path(__file__).parent))
from region_samples import _bar, _molecule, _photo  # noqa: E402


def page_and_image():
    """A 1000x1400 page with a chart, a molecule and a photo pasted at known places."""
    rng = random.Random(3)
    page_image = Image.new("RGB", (1000, 1400), "white")
    placed = []
    for top, maker in ((50, _bar), (550, _molecule), (1000, _photo)):
        crop = maker(rng, 1).resize((400, 300))
        page_image.paste(crop, (300, top))
        placed.append(Box(x1=round(300 / 1000 * 999), y1=round(top / 1400 * 999),
                          x2=round(700 / 1000 * 999), y2=round((top + 300) / 1400 * 999)))
    blocks = [Block(index=i, type=BlockType.FIGURE, label="image", boxes=[box])
              for i, box in enumerate(placed)]
    blocks.append(Block(index=3, type=BlockType.TEXT, label="text", content="Body text.",
                        boxes=[Box(x1=0, y1=990, x2=999, y2=999)]))
    return Page(number=4, blocks=blocks, image_width=1000, image_height=1400), page_image


def test_charts_policy_reads_charts_and_chemistry_only():
    page, image = page_and_image()
    tasks = plan_regions(page, image, RoutingPolicy(mode="charts"))
    assert [(t.block_index, t.route.kind) for t in tasks] == [(0, "chart"), (1, "chemistry")]
    assert tasks[0].request.prompt == "<image>\nParse the figure."
    assert tasks[0].request.key == ("region", 4, 0)
    assert abs(tasks[0].request.image.width - 400) <= 25  # the crop, with a small margin
    everything = plan_regions(page, image, RoutingPolicy(mode="all"))
    assert [t.route.kind for t in everything] == ["chart", "chemistry", "photo"]
    assert plan_regions(page, image, RoutingPolicy(mode="off")) == []


def test_results_are_spliced_with_provenance():
    page, image = page_and_image()
    chart_task, chem_task = plan_regions(page, image, RoutingPolicy(mode="charts"))
    chart_out = "| Quarter | Sales |\n|---|---|\n| Q1 | 10 |\n| Q2 | 12 |"
    apply_region_result(page, chart_task, PageResult(text=chart_out), engine="native")
    block = page.blocks[0]
    assert block.chart.categories == ["Q1", "Q2"] and block.chart.series[0].values == [10, 12]
    assert block.table.grid()[1] == ["Q1", "10"] and block.figure.kind == "chart"
    assert block.provenance.prompt == "<image>\nParse the figure."
    assert block.provenance.crop_box == chart_task.crop_box and block.provenance.raw_output
    apply_region_result(page, chem_task, PageResult(text="<smiles>Oc1ccccc1</smiles>"))
    assert page.blocks[1].chemistry.canonical_smiles == "Oc1ccccc1"


def test_failed_or_prose_rereads_keep_the_first_pass_and_say_so():
    page, image = page_and_image()
    chart_task, chem_task = plan_regions(page, image, RoutingPolicy(mode="charts"))
    apply_region_result(page, chart_task, PageResult(text="", finish_reason="error",
                                                     error="CUDA out of memory"))
    assert page.blocks[0].flags == ["reparse_failed"] and page.blocks[0].chart is None
    apply_region_result(page, chem_task, PageResult(text="A drawing of a ring.",
                                                    finish_reason="length"))
    block = page.blocks[1]
    assert block.figure.description == "A drawing of a ring."
    assert block.flags == ["reparse_length", "chemistry_unparsed"]


def test_degenerate_boxes_are_not_cropped():
    image = Image.new("RGB", (800, 600), "white")
    assert crop_region(image, Box(x1=0, y1=0, x2=0, y2=0)) is None
    assert crop_region(image, Box(x1=100, y1=100, x2=900, y2=900)).size[0] > 600


def test_second_read_payloads_reach_the_markdown():
    page, image = page_and_image()
    chart_task, chem_task = plan_regions(page, image, RoutingPolicy(mode="charts"))
    apply_region_result(page, chart_task,
                        PageResult(text="Sales\n| Quarter | Sales |\n|---|---|\n| Q1 | 10 |"))
    apply_region_result(page, chem_task, PageResult(text="<smiles>C1CC(</smiles>"))
    markdown = page.to_markdown(tables="pipe")
    assert "*Chart: Sales*" in markdown and "| Q1 | 10 |" in markdown
    assert "SMILES: `C1CC(` (invalid SMILES)" in markdown
