"""LangChain connector: loader (lazy, async, PyMuPDFLoader metadata names) and splitter."""

from __future__ import annotations

import asyncio
import types

import pytest
from connector_samples import StubConverter

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_text_splitters")

from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from dsocr_connectors import DeepSeekOCRLoader, DeepSeekOCRTextSplitter  # noqa: E402
from dsocr_connectors.document import Page  # noqa: E402
from dsocr_connectors.langchain import HashingEmbeddings  # noqa: E402
from dsocr_connectors.metadata import rich_metadata, stable_id  # noqa: E402


def loader(path="report.pdf", **options) -> DeepSeekOCRLoader:
    return DeepSeekOCRLoader(path, converter=StubConverter(), **options)


def test_lazy_load_is_a_generator_and_load_inherits_it():
    stub = StubConverter()
    docs = DeepSeekOCRLoader(["a.pdf", "b.pdf"], converter=stub).lazy_load()
    assert isinstance(docs, types.GeneratorType) and stub.converted == []
    assert next(docs).metadata["source"] == "a.pdf" and stub.converted == ["a.pdf"]
    assert "load" not in DeepSeekOCRLoader.__dict__  # the list version is BaseLoader's
    assert len(loader().load()) == 3


def test_alazy_load():
    async def collect():
        return [doc async for doc in loader().alazy_load()]

    docs = asyncio.run(collect())
    assert [d.metadata["page"] for d in docs] == [0, 1, 2]


def test_metadata_names_follow_pymupdf_loader():
    docs = loader().load()
    meta = rich_metadata(docs[1].metadata)
    # PyMuPDFLoader: source, file_path, page (0-based index), total_pages
    assert (meta["source"], meta["file_path"], meta["page"], meta["total_pages"]) == (
        "report.pdf", "report.pdf", 1, 3)
    assert meta["page_label"] == "ii" and meta["status"] == "ok"
    assert Page.model_validate(meta["dsocr"]["page"]).number == 2
    assert docs[1].id == stable_id("report.pdf#page=2")
    assert docs[2].metadata["status"] == "failed" and docs[2].metadata["flags"] == '["loop"]'
    (single,) = loader(split_pages=False, flat_metadata=False).load()
    assert single.metadata["page"] == 0 and single.metadata["page_span"] == [1, 3]


def test_splitter_follows_structure():
    chunks = DeepSeekOCRTextSplitter(chunk_size=400, flat_metadata=False).split_documents(
        loader().load())
    assert all("dsocr" not in c.metadata or "blocks" in c.metadata["dsocr"] for c in chunks)
    tables = [c for c in chunks if c.metadata.get("table_part")]
    assert [c.metadata["table_part"] for c in tables] == ["1/4", "2/4", "3/4", "4/4"]
    assert tables[0].page_content.startswith("## 2 Results\n\nTable 1: Quarterly revenue")
    header = "| Region | Product | Revenue / Q1 | Revenue / Q2 |"
    assert all(c.page_content.count(header) == 1 for c in tables)
    assert all(len(c.page_content) <= 400 for c in chunks)
    equation = next(c for c in chunks if "E = m c^2" in c.page_content)
    assert "$$\nE = m c^2\n$$" in equation.page_content
    details = next(c for c in chunks if "Widgets sold best" in c.page_content)
    meta = details.metadata
    assert meta["page"] == 1 and meta["page_label"] == "ii" and meta["page_span"] == [2, 2]
    assert meta["heading_path"] == ["Annual Report 2024", "2 Results", "2.1 Details"]
    assert meta["boxes"] == [{"page": 2, "bbox": [100, 90, 900, 170]}]
    assert meta["source"] == "report.pdf" and meta["total_pages"] == 3


def test_splitter_block_mode_and_token_length():
    docs = loader().load()
    by_block = DeepSeekOCRTextSplitter(chunk_size=4000, chunk_by="block").split_documents(docs)
    by_section = DeepSeekOCRTextSplitter(chunk_size=4000).split_documents(docs)
    assert len(by_block) > len(by_section)
    words = DeepSeekOCRTextSplitter(chunk_size=60, length_function=lambda t: len(t.split()))
    chunks = words.split_documents(docs)
    assert all(len(c.page_content.split()) <= 60 for c in chunks
               if "oversize" not in c.metadata["flags"])


def test_splitter_on_plain_documents_and_text():
    splitter = DeepSeekOCRTextSplitter(chunk_size=60)
    text = "# Guide\n\n" + " ".join(f"Step {i} is done." for i in range(12))
    pieces = splitter.split_text(text)
    assert len(pieces) > 1 and all(p.endswith("done.") for p in pieces[1:])
    (first, *_rest) = splitter.split_documents(
        [LCDocument(page_content=text, metadata={"source": "g.md", "page": 4})])
    assert first.metadata["source"] == "g.md" and first.metadata["page"] == 4
    assert first.metadata["heading_path"] == '["Guide"]'
    with pytest.raises(ValueError):
        DeepSeekOCRTextSplitter(chunk_size=10, chunk_overlap=20)


def test_split_chunks_retrieved_from_a_vector_store():
    chunks = DeepSeekOCRTextSplitter(chunk_size=400).split_documents(loader().load())
    store = InMemoryVectorStore(HashingEmbeddings())
    store.add_documents(chunks)
    (top,) = store.similarity_search("Gadgets lagged in Lowfield", k=1)
    assert "Gadgets lagged in Lowfield" in top.page_content
    assert top.metadata["page_label"] == "ii"


def test_page_payload_leaves_the_text_layers_word_boxes_out():
    """Metadata rides into vector stores: a checked block keeps its verdict, not one box per
    word (the Document JSON of `dsocr convert` keeps those)."""
    from dsocr_connectors.document import (
        Block,
        BlockType,
        Box,
        Document,
        Page,
        TextCheck,
        WordBox,
    )
    from dsocr_connectors.payload import Prepared

    words = [WordBox(text=f"w{i}", bbox=(i, 0, i + 1, 1)) for i in range(500)]
    block = Block(index=0, type=BlockType.TEXT, label="text", boxes=[Box(x1=1, y1=1, x2=9, y2=9)],
                  content=" ".join(w.text for w in words),
                  text_check=TextCheck(status="confirmed", num_chars=1890, words=words))
    page = Page(number=1, blocks=[block])
    payload = Prepared(Document(source="d.pdf", pages=[page])).page_payload(page)
    check = payload["page"]["blocks"][0]["text_check"]
    assert check["status"] == "confirmed" and check["num_chars"] == 1890
    assert "words" not in check
    assert page.blocks[0].text_check.words == words  # the document itself is untouched
