"""`build_page`: a parser or export failure makes its page `failed`, with the reason, the
raw output kept; the other pages of the run are untouched (issue #11, item 4)."""

from __future__ import annotations

import pytest

import dsocr_connectors.export.markdown as markdown
import dsocr_connectors.parsing as parsing
from core_model.engines.interface import PageResult
from dsocr_connectors.document import PageStatus
from dsocr_connectors.pipeline import Converter
from dsocr_connectors.pipeline.page_builder import build_page
from tests.scripted_engine import ScriptedEngine, make_page

GOOD = "<|ref|>text<|/ref|><|det|>[[10, 20, 900, 80]]<|/det|>\nHello world."
OPTIONS = {"engine": "scripted", "mode": "gundam", "prompt": "<image>\n<|grounding|>Convert the document to markdown."}


def build(text: str, finish: str = "eos"):
    return build_page(PageResult(text=text, finish_reason=finish), make_page("a.pdf", 3), **OPTIONS)


def test_a_clean_page_is_ok() -> None:
    page = build(GOOD)
    assert page.status is PageStatus.OK and page.errors == [] and page.raw_output == GOOD


def test_a_5000_digit_coordinate_no_longer_breaks_the_parser() -> None:
    page = build(GOOD.replace("[[10,", "[[" + "7" * 5000 + ","))
    assert page.status is PageStatus.OK and page.errors == []
    assert page.blocks[0].content == "Hello world." and "box_clamped" in page.flags


def test_a_parser_failure_fails_the_page_with_its_reason(monkeypatch) -> None:
    def broken(raw, **_):
        raise ValueError("cannot read this")

    monkeypatch.setattr(parsing, "parse_page", broken)
    page = build(GOOD)
    assert page.status is PageStatus.FAILED
    assert page.reason == "parse error: cannot read this"
    assert [(e.stage, e.type) for e in page.errors] == [("parse", "ValueError")]
    assert page.raw_output == GOOD and page.number == 3


def test_a_parse_error_the_parser_caught_still_fails_the_page(monkeypatch) -> None:
    """parse_page never raises: it reports `parse_error` and keeps the text in one block."""
    import dsocr_connectors.parsing.page as page_module

    def broken(raw, prompt):
        raise RuntimeError("bug in a rule")

    monkeypatch.setattr(page_module, "_parse", broken)
    page = build(GOOD)
    assert page.status is PageStatus.FAILED and page.reason.startswith("parse error: page 3: bug")
    assert "parse_error" in page.flags and page.blocks[0].content.endswith("Hello world.")
    assert page.raw_output == GOOD


def test_an_export_failure_fails_the_page_and_the_markdown_still_writes(monkeypatch) -> None:
    def broken(page, block, **_):
        raise KeyError("no renderer")

    monkeypatch.setattr(markdown, "block_to_markdown", broken)
    import dsocr_connectors.pipeline.page_builder as builder

    monkeypatch.setattr(builder, "block_to_markdown", broken)
    page = build(GOOD)
    assert page.status is PageStatus.FAILED and page.reason.startswith("export error: page 3, block 0")
    assert [e.stage for e in page.errors] == ["export"]
    # one block's fallback, the document still writes, after the note that the page failed
    assert page.to_markdown(failed_notes=False) == "Hello world."
    assert page.to_markdown().startswith("> **Page 3 failed**: export error: page 3, block 0")


@pytest.fixture
def one_document(monkeypatch):
    import loaders

    pages = [make_page("a.pdf", n, total=3) for n in (1, 2, 3)]
    monkeypatch.setattr(loaders, "iter_pages", lambda *a, **k: iter(pages), raising=False)


def test_in_a_run_only_the_broken_page_fails(one_document, monkeypatch) -> None:
    real = parsing.parse_page

    def fragile(raw, *, number, **options):
        if number == 2:
            raise ValueError("page two is cursed")
        return real(raw, number=number, **options)

    monkeypatch.setattr(parsing, "parse_page", fragile)
    doc = Converter(engine=ScriptedEngine()).convert("a.pdf")
    assert [p.status.value for p in doc.pages] == ["ok", "failed", "ok"]
    assert doc.pages[1].reason == "parse error: page two is cursed" and doc.pages[1].raw_output
