"""Pages that were not read say so where users look: the Markdown (a note per page: which,
why, what to pass), the output folder (no silent empty file), the connectors (a logged
warning with the count) and the RAG examples (a count and exit code 2)."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path

import pytest

from dsocr_connectors.document import Block, BlockType, Document, Page, PageStatus
from dsocr_connectors.export.markdown import failed_note
from dsocr_connectors.pipeline import NEEDS_MODEL, Converter, OutputFolder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL_HINT = "`dsocr convert --model DIR` (or set `$DSOCR_MODEL`), `Converter(model=DIR)`"


@pytest.fixture(scope="module")
def scanned() -> Document:
    return Converter().convert(EXAMPLES / "scanned.pdf")  # no model: both pages fail


def test_a_scan_without_a_model_gets_a_note_per_page_saying_what_to_pass(scanned):
    markdown = scanned.to_markdown()
    for number in (1, 2):
        assert f"> **Page {number} was not read**: it needs a model" in markdown
    assert markdown.count(MODEL_HINT) == 2
    assert scanned.to_markdown(failed_notes=False).strip() == "<--- Page Split --->"
    assert scanned.pages[0].to_markdown().startswith("> **Page 1 was not read**")


def test_the_note_follows_the_converters_wording_of_a_page_that_needs_a_model():
    page = Page(number=3, status=PageStatus.FAILED, reason=NEEDS_MODEL)
    assert MODEL_HINT in failed_note(page)


def test_other_failures_give_their_reason_and_partial_content_is_called_partial():
    empty = Page(number=4, status=PageStatus.FAILED, reason="engine error: CUDA out of memory")
    assert failed_note(empty) == "> **Page 4 was not read**: engine error: CUDA out of memory."
    partial = Page(number=5, status=PageStatus.FAILED, reason="repetition loop",
                   blocks=[Block(index=0, type=BlockType.TEXT, label="text", content="Intro")])
    assert partial.to_markdown() == (
        "> **Page 5 failed**: repetition loop. What follows is partial.\n\nIntro")
    read = Page(number=6, status=PageStatus.OK, blocks=partial.blocks)
    assert read.to_markdown() == "Intro"


def test_the_output_folder_never_writes_a_silent_empty_file(tmp_path):
    summary = OutputFolder(tmp_path).convert(Converter(), [EXAMPLES / "page.png"])
    assert summary.exit_code == 2
    text = (tmp_path / "page.md").read_text()
    assert text.startswith("> **Page 1 was not read**: it needs a model") and MODEL_HINT in text


def test_the_connectors_warn_with_the_count_and_keep_the_note_out_of_the_text(caplog, scanned):
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from dsocr_connectors import DeepSeekOCRLoader, DeepSeekOCRReader

    class Ready:  # the converted document, without converting it again
        def convert(self, source, *, name=None):
            return scanned.model_copy(deep=True)

    with caplog.at_level(logging.WARNING, logger="dsocr_connectors"):
        docs = DeepSeekOCRReader(converter=Ready()).load_data(str(EXAMPLES / "scanned.pdf"))
        pages = DeepSeekOCRLoader(str(EXAMPLES / "scanned.pdf"), converter=Ready()).load()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for message in warnings:
        assert "scanned.pdf: 2 of 2 pages were not read (pages 1, 2: needs a model" in message
        assert "pass model=" in message
    assert [d.text for d in docs] == ["", ""]
    assert [p.page_content for p in pages] == ["", ""]
    assert [d.metadata["status"] for d in docs] == ["failed", "failed"]


@pytest.mark.parametrize("name", ["rag_llamaindex.py", "langchain_split.py"])
def test_the_examples_count_unread_pages_and_exit_2(name, capsys):
    pytest.importorskip("llama_index.core" if "llama" in name else "langchain_core")
    main = runpy.run_path(str(EXAMPLES / name))["main"]
    assert main([str(EXAMPLES / "scanned.pdf")]) == 2
    out = capsys.readouterr().out
    assert "2 of 2 pages were not read (pages 1, 2;" in out and "--model DIR" in out
