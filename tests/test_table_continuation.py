"""Tables continued across pages: linked in the Document, merged in Markdown, chunks and tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsocr_connectors.deep import document_tables
from dsocr_connectors.deep.table_merge import link_continued_tables, merged_view
from dsocr_connectors.document import (
    Block,
    BlockRef,
    BlockType,
    Box,
    Document,
    Page,
    Table,
    TableCell,
)
from splitters import chunk_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HEAD = ["Site", "Samples", "Nitrate"]


def table(rows, header_rows=1, spans=()):
    span_of = {(r, c): (rs, cs) for r, c, rs, cs in spans}
    covered = {(r + i, c + j) for (r, c), (rs, cs) in span_of.items()
               for i in range(rs) for j in range(cs)} - set(span_of)
    cells = [TableCell(row=r, col=c, text=text, row_span=span_of.get((r, c), (1, 1))[0],
                       col_span=span_of.get((r, c), (1, 1))[1], is_header=r < header_rows)
             for r, row in enumerate(rows) for c, text in enumerate(row) if (r, c) not in covered]
    return Table(num_rows=len(rows), num_cols=len(rows[0]), cells=cells, header_rows=header_rows)


def rows(first, last):
    return [[f"R-{n:02d}", str(n % 3 + 8), f"{3 + n * 0.35:.2f}"] for n in range(first, last)]


def page(number, *blocks):
    return Page(number=number, image_width=1000, image_height=1400,
                blocks=[b.model_copy(update={"index": i}) for i, b in enumerate(blocks)])


def tab(t, box=(100, 100, 900, 950)):
    return Block(index=0, type=BlockType.TABLE, label="table", table=t,
                 boxes=[Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])])


def text(kind, content, box=(100, 40, 900, 60)):
    return Block(index=0, type=kind, label=kind.value, content=content,
                 boxes=[Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])])


def two_pages(second_table, *lead, end=()):
    return Document(source="r.pdf", pages=[
        page(1, text(BlockType.SECTION_HEADING, "## 2 Measurements"),
             text(BlockType.TABLE_CAPTION, "Table 1: Nitrate by site"),
             tab(table([HEAD, *rows(1, 25)]), (100, 120, 900, 960)),
             text(BlockType.PAGE_NUMBER, "1", (480, 970, 520, 990))),
        page(2, text(BlockType.HEADER, "Water report", (100, 5, 900, 20)), *lead,
             tab(second_table, (100, 80, 900, 300)), *end),
    ])


@pytest.mark.parametrize("second, lead", [
    (table([HEAD, *rows(25, 31)]), []),  # the header repeated
    (table(rows(25, 31), header_rows=0), []),  # no header
    (table([HEAD, *rows(25, 31)], header_rows=0), []),  # repeated but not marked as header
    (table([["Site", "n", "NO3"], *rows(25, 31)]),  # another header, but "continued"
     [text(BlockType.TABLE_CAPTION, "Table 1 (continued)")]),
    (table(rows(25, 31), header_rows=0), [text(BlockType.TEXT, "续表")]),
])
def test_continuations_are_linked_and_merged(second, lead):
    doc = two_pages(second, *lead)
    assert link_continued_tables(doc) == 1 and link_continued_tables(doc) == 0  # idempotent
    first_block, second_block = doc.pages[0].blocks[2], doc.pages[1].blocks[-1]
    assert first_block.continued_by == BlockRef(page=2, block=second_block.index)
    assert second_block.continues == BlockRef(page=1, block=2)
    (merged,) = document_tables(doc)
    assert [(p.page, p.block) for p in merged.parts] == [(1, 2), (2, second_block.index)]
    grid = merged.table.grid()
    kept = second.header_rows and second.grid()[0] != HEAD  # a differing header: kept as a row
    assert [r[0] for r in grid].count("Site") == (2 if kept else 1)  # a repeat is dropped
    assert [r[0] for r in grid if r[0].startswith("R-")] == [f"R-{n:02d}" for n in range(1, 31)]
    assert "merged_across_pages" in merged.table.flags
    assert ("continuation_header_kept" in merged.table.flags) == bool(kept)
    assert second_block.table == second  # the parts themselves are unchanged


@pytest.mark.parametrize("second, lead, end", [
    (table([["Year", "Cases", "Rate"], ["2020", "3", "1.2"]]), [], []),  # a new header
    (table(rows(25, 31), header_rows=0), [text(BlockType.TABLE_CAPTION, "Table 2: Phosphate")],
     []),  # a new caption
    (table([["a", "b"], ["1", "2"]]), [], []),  # other columns
    (table(rows(25, 31), header_rows=0), [text(BlockType.SECTION_HEADING, "## 3 Results")], []),
    (table(rows(25, 31), header_rows=0), [text(BlockType.TEXT, "Sites were sampled weekly.")],
     []),  # text before it: not at the top of the page
])
def test_new_tables_are_not_linked(second, lead, end):
    doc = two_pages(second, *lead, end=end)
    assert link_continued_tables(doc) == 0
    assert len(document_tables(doc)) == 2


def test_not_linked_when_text_follows_the_first_table_or_pages_are_apart():
    doc = two_pages(table(rows(25, 31), header_rows=0))
    doc.pages[0].blocks.insert(3, text(BlockType.TEXT, "Averages are weekly.", (100, 962, 900,
                                                                                968)))
    assert link_continued_tables(doc) == 0
    doc = two_pages(table(rows(25, 31), header_rows=0))
    doc.pages[1].number = 3
    assert link_continued_tables(doc) == 0


def test_markdown_export_writes_the_merged_table_once():
    doc = two_pages(table([HEAD, *rows(25, 31)]))
    link_continued_tables(doc)
    markdown = doc.to_markdown(tables="pipe")
    first, second = markdown.split("<--- Page Split --->")
    assert "R-01" in first and "R-30" in first and first.count("| Site |") == 1
    assert "R-30" not in second and "table continued from page 1" in second
    assert doc.pages[1].to_markdown(tables="pipe").count("R-30") == 1  # the page alone: as read
    assert merged_view(Document(source="x")).source == "x"


def test_chunks_hold_the_merged_table_with_the_provenance_of_its_parts():
    doc = two_pages(table([HEAD, *rows(25, 31)]))
    link_continued_tables(doc)
    whole = chunk_document(doc, chunk_size=4000)
    (table_chunk,) = [c for c in whole if c.tables]
    assert table_chunk.block_refs[-2:] == [(1, 2), (2, 1)] and table_chunk.pages == (1, 2)
    assert table_chunk.text.count("| Site |") == 1 and "R-30" in table_chunk.text
    assert sorted(table_chunk.page_boxes) == [1, 2]
    parts = [c for c in chunk_document(doc, chunk_size=300) if c.tables]
    assert len(parts) == 3 and all(c.text.count("| Site | Samples | Nitrate |") == 1 for c in parts)
    for part in parts:  # each part cites the pages its rows come from
        numbers = [int(line[4:6]) for line in part.text.splitlines() if line.startswith("| R-")]
        assert part.pages == (1 if numbers[0] <= 24 else 2, 1 if numbers[-1] <= 24 else 2)
    body = [line for c in parts for line in c.text.splitlines() if line.startswith("| R-")]
    assert body == [f"| R-{n:02d} | {n % 3 + 8} | {3 + n * 0.35:.2f} |" for n in range(1, 31)]


def test_born_digital_example_table_is_linked():
    from dsocr_connectors.pipeline import Converter

    doc = Converter().convert(EXAMPLES / "born_digital.pdf")  # linked as the doc completes
    assert sum(b.continued_by is not None for p in doc.pages for b in p.blocks) == 1
    assert link_continued_tables(doc) == 0  # idempotent: nothing new to link
    (found,) = document_tables(doc)
    assert found.table.num_rows == 31 and [p.page for p in found.parts] == [1, 2]
    assert found.caption == "Table 1: Nitrate by site."
