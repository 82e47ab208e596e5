"""Typed financial tables, tables merged across pages, and `dsocr tables`."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from dsocr_connectors.deep import annotate_page, document_tables, type_table
from dsocr_connectors.document import Block, BlockType, Box, Document, Page, Table, TableCell


def make_table(rows, header_rows=1, spans=()):
    """rows: list of lists of text; spans: (row, col, row_span, col_span) to widen cells."""
    span_of = {(r, c): (rs, cs) for r, c, rs, cs in spans}
    covered = set()
    for (r, c), (rs, cs) in span_of.items():
        covered |= {(r + i, c + j) for i in range(rs) for j in range(cs)} - {(r, c)}
    cells = []
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if (r, c) in covered:
                continue
            rs, cs = span_of.get((r, c), (1, 1))
            cells.append(TableCell(row=r, col=c, text=text, row_span=rs, col_span=cs,
                                   is_header=r < header_rows))
    return Table(num_rows=len(rows), num_cols=len(rows[0]), cells=cells, header_rows=header_rows)


FINANCIAL = [
    ["", "Revenue", "", "Margin"],
    ["", "2023", "2024", "2024"],
    ["Europe", "1,234.5", "(12.0)", "12.5%"],
    ["Asia", "—", "3,000¹", "-"],
]


def test_typed_table_multilevel_header_scale_and_raw_kept():
    table = make_table(FINANCIAL, header_rows=2, spans=[(0, 1, 1, 2)])
    typed = type_table(table, caption="Table 3: Results (in millions of USD)")
    assert typed.columns == [("Revenue", "2023"), ("Revenue", "2024"), ("Margin", "2024")]
    assert typed.column_names == ["Revenue / 2023", "Revenue / 2024", "Margin / 2024"]
    assert typed.scale == 1e6 and typed.currency == "USD"
    frame = typed.to_frame()
    assert frame.loc["Europe", "Revenue / 2023"] == pytest.approx(1234.5e6)
    assert frame.loc["Europe", "Revenue / 2024"] == pytest.approx(-12e6)
    assert frame.loc["Europe", "Margin / 2024"] == pytest.approx(12.5)  # percent: no scale
    assert pd.isna(frame.loc["Asia", "Revenue / 2023"])
    raw = typed.to_frame("raw")
    assert raw.loc["Asia", "Revenue / 2024"] == "3,000¹"
    long = typed.to_long()
    cell = long[(long.row_label == "Asia") & (long.column == "Revenue / 2024")].iloc[0]
    assert cell.value == pytest.approx(3e9) and cell.footnotes == ["¹"] and cell.raw == "3,000¹"


def test_header_rows_are_guessed_and_flagged_when_the_table_has_none():
    table = make_table([["Item", "2023", "2024"], ["Sales", "10", "12"]], header_rows=0)
    typed = type_table(table)
    assert typed.column_names == ["2023", "2024"] and "header_guessed" in typed.flags
    assert typed.to_frame().loc["Sales", "2024"] == 12


def page_with(number, *tables, caption=None):
    blocks = []
    if caption:
        blocks.append(Block(index=0, type=BlockType.TABLE_CAPTION, label="table_caption",
                            content=caption))
    for table in tables:
        blocks.append(Block(index=len(blocks), type=BlockType.TABLE, label="table", table=table,
                            boxes=[Box(x1=50, y1=100, x2=950, y2=900)]))
    return Page(number=number, blocks=blocks)


HEAD = ["Segment", "2023", "2024"]


def test_tables_continued_across_pages_merge_when_headers_match():
    first = make_table([HEAD, ["A", "1", "2"], ["B", "3", "4"]])
    second = make_table([[h.upper() for h in HEAD], ["C", "5", "6"]])  # case folded
    other = make_table([["x", "y", "z"], ["1", "2", "3"]])
    doc = Document(source="r.pdf", pages=[page_with(1, first, caption="Sales (in thousands)"),
                                          page_with(2, second), page_with(3, other)])
    found = document_tables(doc)
    assert len(found) == 2
    merged = found[0]
    assert [p.page for p in merged.parts] == [1, 2]
    assert merged.table.num_rows == 4 and "merged_across_pages" in merged.table.flags
    assert [row[0] for row in merged.table.grid()] == ["Segment", "A", "B", "C"]
    assert merged.caption == "Sales (in thousands)"
    assert len(document_tables(doc, merge=False)) == 3


def test_tables_without_matching_headers_or_not_adjacent_stay_apart():
    first = make_table([HEAD, ["A", "1", "2"]])
    different = make_table([["Segment", "2022", "2023"], ["C", "5", "6"]])
    doc = Document(source="r.pdf", pages=[page_with(1, first), page_with(2, different)])
    assert len(document_tables(doc)) == 2  # a new header, no "continued" caption: a new table
    gap = Document(source="r.pdf", pages=[page_with(1, first), Page(number=2),
                                          page_with(3, make_table([HEAD, ["C", "5", "6"]]))])
    assert len(document_tables(gap)) == 2


def test_annotate_page_writes_typed_values_into_the_document_json():
    page = page_with(1, make_table(FINANCIAL, header_rows=2, spans=[(0, 1, 1, 2)]),
                     caption="单位：万元")
    annotate_page(page)
    table = page.blocks[1].table
    assert table.scale == 1e4 and table.currency == "CNY"
    cell = next(c for c in table.cells if c.text == "(12.0)")
    assert cell.value == pytest.approx(-12e4) and cell.value_kind == "number"
    restored = Page.model_validate_json(page.model_dump_json())
    assert next(c for c in restored.blocks[1].table.cells if c.text == "(12.0)").value == -12e4


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_cli_tables_writes_every_format_with_provenance(tmp_path, fmt):
    first = make_table([HEAD, ["A", "1,000", "(2)"], ["B", "3", "4"]])
    second = make_table([HEAD, ["C", "5", "6"]])
    doc = Document(source="/data/annual report.pdf",
                   pages=[page_with(1, first, caption="in millions"), page_with(2, second)])
    saved = tmp_path / "report.json"
    saved.write_text(doc.to_json())
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "dsocr_connectors.cli", "tables", str(saved), "-o", str(out),
         "--format", fmt], capture_output=True, text=True, check=True)
    assert "1 tables" in result.stderr
    if fmt == "csv":
        index, cells = pd.read_csv(out / "index.csv"), pd.read_csv(out / "cells.csv")
        wide = pd.read_csv(out / "annual_report_p1_t1.csv", index_col="row")
        assert wide.loc["A", "2023"] == 1e9
    elif fmt == "xlsx":
        index = pd.read_excel(out / "tables.xlsx", sheet_name="index")
        cells = pd.read_excel(out / "tables.xlsx", sheet_name="cells")
    else:
        index, cells = pd.read_parquet(out / "index.parquet"), pd.read_parquet(out / "cells.parquet")
    row = index.iloc[0]
    assert row.source == "/data/annual report.pdf"
    assert json.loads(row.pages) == [1, 2] and json.loads(row.boxes)[0] == [[50, 100, 950, 900]]
    assert len(cells) == 6  # 3 body rows x 2 value columns, the repeated header dropped
    negative = cells[cells.raw == "(2)"].iloc[0]
    assert negative.value == -2e6 and negative.first_page == 1


def test_cli_tables_rejects_unknown_format(tmp_path):
    saved = tmp_path / "d.json"
    saved.write_text(Document(source="d.pdf").to_json())
    result = subprocess.run([sys.executable, "-m", "dsocr_connectors.cli", "tables", str(saved),
                             "-o", str(tmp_path), "--format", "docx"], capture_output=True,
                            text=True)
    assert result.returncode == 1 and "unknown format docx" in result.stderr
