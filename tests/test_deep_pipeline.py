"""The second pass inside the Converter: figure regions re-read in later batches, tables typed."""

from __future__ import annotations

import random

import pytest
from PIL import Image

import loaders
from core_model.engines.interface import PageResult
from dsocr_connectors.pipeline import Converter
from loaders.page import LoadedPage
from tests.region_samples import _bar

PAGE_OUTPUT = (
    "<|ref|>title<|/ref|><|det|>[[100, 20, 900, 60]]<|/det|>\n# Annual report\n\n"
    "<|ref|>image<|/ref|><|det|>[[300, 100, 700, 400]]<|/det|>\n\n"
    "<|ref|>table<|/ref|><|det|>[[100, 500, 900, 700]]<|/det|>\n"
    "<table><tr><td>Segment</td><td>2024</td></tr><tr><td>EU</td><td>(1,234)</td></tr></table>"
    "\n\n<|ref|>table_caption<|/ref|><|det|>[[100, 470, 900, 490]]<|/det|>\nIn millions\n"
)
CHART_OUTPUT = "| Quarter | Sales |\n|---|---|\n| Q1 | 10 |\n| Q2 | 12.5 |"


class TwoPassEngine:
    name = "two-pass"

    def __init__(self):
        self.calls = []

    def generate(self, requests, *, on_token=None):
        self.calls.append([(r.prompt, r.mode, r.image.size) for r in requests])
        return [PageResult(text=CHART_OUTPUT if "Parse the figure" in r.prompt else PAGE_OUTPUT,
                           finish_reason="eos", num_vision_tokens=273, num_output_tokens=50)
                for r in requests]


def chart_page(number: int) -> LoadedPage:
    """Pages 1 and 2 have a bar chart where the output puts its image block; the rest blank."""
    image = Image.new("RGB", (1000, 1000), "white")
    if number <= 2:
        image.paste(_bar(random.Random(number), 1).resize((400, 300)), (300, 100))
    return LoadedPage(source="r.pdf", number=number, total_pages=6, image=image)


@pytest.fixture
def six_pages(monkeypatch):
    def iter_pages(source, **options):
        yield from (chart_page(n) for n in range(1, 7))

    monkeypatch.setattr(loaders, "iter_pages", iter_pages, raising=False)


def test_chart_regions_are_reread_and_batched_with_pages(six_pages):
    engine = TwoPassEngine()
    doc = Converter(engine=engine, max_in_flight=4, mode="base").convert("r.pdf")
    assert [p.number for p in doc.pages] == [1, 2, 3, 4, 5, 6]
    prompts = [[prompt for prompt, _, _ in call] for call in engine.calls]
    assert sum(p.count("<image>\nParse the figure.") for p in prompts) == 2  # blank: no chart
    order = [prompt for call in prompts for prompt in call]  # requests as the engine got them
    first_region = order.index("<image>\nParse the figure.")
    last_page = max(i for i, prompt in enumerate(order) if "Parse the figure" not in prompt)
    assert first_region < last_page, "region reads wait for every page read (a barrier)"
    figure = doc.pages[0].blocks[1]
    assert figure.chart.categories == ["Q1", "Q2"] and figure.chart.series[0].values == [10, 12.5]
    assert figure.provenance.prompt == "<image>\nParse the figure."
    assert figure.provenance.crop_box.x1 == 300
    table = next(b.table for b in doc.pages[0].blocks if b.label == "table")
    assert table.scale == 1e6
    assert next(c for c in table.cells if c.text == "(1,234)").value == -1234e6
    assert "*Chart data*" in doc.to_markdown()


def test_reparse_off_reads_each_page_once(six_pages):
    engine = TwoPassEngine()
    Converter(engine=engine, max_in_flight=4, reparse="off").convert("r.pdf")
    assert sum(len(call) for call in engine.calls) == 6
