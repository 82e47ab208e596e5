"""LlamaIndex connector: reader, node parser, and an IngestionPipeline into a VectorStoreIndex."""

from __future__ import annotations

import asyncio
import json
import sys
import types

import pytest
from connector_samples import StubConverter, sample_document

pytest.importorskip("llama_index.core")

from llama_index.core import Document as LIDocument  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.ingestion import IngestionPipeline  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeRelationship  # noqa: E402

from dsocr_connectors import DeepSeekOCRNodeParser, DeepSeekOCRReader  # noqa: E402
from dsocr_connectors.document import Document, Page  # noqa: E402
from dsocr_connectors.llama_index import HashingEmbedding  # noqa: E402
from dsocr_connectors.metadata import rich_metadata, stable_id  # noqa: E402


def reader(**options) -> DeepSeekOCRReader:
    return DeepSeekOCRReader(converter=StubConverter(), **options)


def test_lazy_load_data_is_a_generator_that_converts_on_demand():
    stub = StubConverter()
    docs = DeepSeekOCRReader(converter=stub).lazy_load_data(["a.pdf", "b.pdf"])
    assert isinstance(docs, types.GeneratorType)
    assert stub.converted == []
    first = next(docs)
    assert stub.converted == ["a.pdf"] and first.metadata["source"] == "a.pdf"
    assert len(list(docs)) == 5 and stub.converted == ["a.pdf", "b.pdf"]


def test_one_document_per_page_with_metadata():
    docs = reader().load_data("report.pdf", extra_info={"project": "acme"})
    assert [d.id_ for d in docs] == [stable_id(f"report.pdf#page={n}") for n in (1, 2, 3)]
    assert all(isinstance(v, (str, int, float, bool)) for d in docs for v in d.metadata.values())
    meta = rich_metadata(docs[0].metadata)
    assert {k: meta[k] for k in ("source", "file_path", "file_name", "page", "page_label",
                                 "total_pages", "status", "flags", "project")} == {
        "source": "report.pdf", "file_path": "report.pdf", "file_name": "report.pdf",
        "page": 1, "page_label": "i", "total_pages": 3, "status": "ok", "flags": [],
        "project": "acme"}
    assert docs[2].metadata["status"] == "failed" and docs[2].metadata["flags"] == '["loop"]'
    assert Page.model_validate(meta["dsocr"]["page"]) == sample_document().pages[0]
    assert rich_metadata(docs[1].metadata)["dsocr"]["open_headings"] == [[1, "Annual Report 2024"],
                                                         [2, "2 Results"]]
    assert "# Annual Report 2024\n\n## 1 Introduction" in docs[0].text
    # the bulky payload and bookkeeping stay out of what is embedded and shown to the LLM
    for mode in (MetadataMode.EMBED, MetadataMode.LLM):
        shown = docs[0].get_metadata_str(mode)
        assert "dsocr" not in shown and "status" not in shown and "project: acme" in shown


def test_one_document_per_file():
    (doc,) = reader(split_pages=False, flat_metadata=False).load_data("report.pdf")
    assert doc.id_ == stable_id("report.pdf")
    assert doc.metadata["page"] == 1 and doc.metadata["page_span"] == [1, 3]
    assert doc.metadata["status"] == "failed"  # the worst page status
    assert doc.metadata["flags"] == ["page 3: loop"]
    assert Document.model_validate(doc.metadata["dsocr"]["document"]).num_pages == 3
    assert "Outlook for 2025" in doc.text and "Widgets sold best" in doc.text


def test_json_export_text_is_the_page():
    docs = reader(export_type="json").load_data("report.pdf")
    page = Page.model_validate_json(docs[0].text)
    assert page.number == 1 and page.blocks[9].table is not None
    assert "page" not in rich_metadata(docs[0].metadata)["dsocr"]
    nodes = DeepSeekOCRNodeParser(chunk_size=400).get_nodes_from_documents(docs)
    markdown_nodes = DeepSeekOCRNodeParser(chunk_size=400).get_nodes_from_documents(
        reader().load_data("report.pdf"))
    assert [n.text for n in nodes] == [n.text for n in markdown_nodes]


def test_custom_id_and_metadata_functions():
    docs = reader(
        id_func=lambda source, page: f"doc-{page}",
        metadata_func=lambda meta, doc, page: {**meta, "words": len(page.blocks)},
    ).load_data("report.pdf")
    assert [d.id_ for d in docs] == ["doc-1", "doc-2", "doc-3"]
    assert docs[0].metadata["words"] == 10


def test_converter_built_lazily_from_options(monkeypatch):
    made = []

    class FakeConverter(StubConverter):
        def __init__(self, **options):
            super().__init__()
            made.append(options)

    monkeypatch.setitem(sys.modules, "dsocr_connectors.pipeline",
                        types.SimpleNamespace(Converter=FakeConverter))
    r = DeepSeekOCRReader(mode="tiny", dpi=100)
    assert made == []
    assert len(r.load_data("x.pdf")) == 3
    assert made == [{"mode": "tiny", "dpi": 100}]
    with pytest.raises(TypeError, match="either converter"):
        DeepSeekOCRReader(converter=StubConverter(), mode="tiny")
    with pytest.raises(TypeError, match="extra_info"):
        reader().load_data("x.pdf", extra_info="nope")


def test_async_and_fsspec():
    docs = asyncio.run(reader().aload_data("report.pdf"))
    assert len(docs) == 3
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/in/scan.pdf", b"%PDF stand-in")
    stub = StubConverter()
    docs = DeepSeekOCRReader(converter=stub).load_data("/in/scan.pdf", fs=fs)
    assert stub.converted == ["/in/scan.pdf"] and docs[0].metadata["source"] == "/in/scan.pdf"


def test_node_parser_metadata_and_relationships():
    docs = reader().load_data("report.pdf")
    nodes = DeepSeekOCRNodeParser(chunk_size=400).get_nodes_from_documents(docs)
    by_doc: dict[str, list] = {}
    for node in nodes:
        assert node.relationships[NodeRelationship.SOURCE].node_id == node.ref_doc_id
        assert NodeRelationship.PARENT not in node.relationships  # no hierarchy among chunks
        by_doc.setdefault(node.ref_doc_id, []).append(node)
    assert list(by_doc) == [stable_id(f"report.pdf#page={n}") for n in (1, 2, 3)]
    for siblings in by_doc.values():
        assert NodeRelationship.PREVIOUS not in siblings[0].relationships
        assert NodeRelationship.NEXT not in siblings[-1].relationships
        for a, b in zip(siblings, siblings[1:], strict=False):
            assert a.relationships[NodeRelationship.NEXT].node_id == b.node_id
            assert b.relationships[NodeRelationship.PREVIOUS].node_id == a.node_id

    table = next(n for n in nodes if "Zanzibar | Widgets" in n.text)
    assert all(isinstance(v, (str, int, float, bool)) for v in table.metadata.values())
    meta = rich_metadata(table.metadata)
    assert meta["source"] == "report.pdf" and meta["page"] == 1 and meta["page_label"] == "i"
    assert meta["block_types"] == ["table"] and meta["table_part"] == "2/4"
    assert meta["heading_path"] == ["Annual Report 2024", "2 Results"]
    assert meta["boxes"] == [{"page": 1, "bbox": [100, 480, 900, 980]}]
    assert meta["boxes_px"] == [{"page": 1, "bbox": [100.1, 672.7, 900.9, 1373.4]}]
    assert meta["boxes_norm"][0]["bbox"][0] == pytest.approx(100 / 999, abs=1e-4)
    assert meta["table_html"].startswith("<table><thead><tr><th rowspan=\"2\">Region</th>")
    assert "Zanzibar" in meta["table_html"] and "| Zanzibar |" in meta["table_markdown"]
    assert meta["page_status"] == "ok" and meta["dsocr"]["blocks"] == [[1, 9]]
    embedded = table.get_content(MetadataMode.EMBED)
    assert "section: Annual Report 2024 > 2 Results" in embedded
    assert "bbox" not in embedded and "<table>" not in embedded and "dsocr" not in embedded

    last = rich_metadata(by_doc[stable_id("report.pdf#page=3")][0].metadata)  # partial, flagged
    assert last["page_status"] == "failed" and "page 3: loop" in last["flags"]
    assert last["heading_path"][-1] == "2.1 Details"  # section continues over pages


def test_node_ids_are_stable_and_modes_differ():
    def ids(**options):
        nodes = DeepSeekOCRNodeParser(**options).get_nodes_from_documents(
            reader().load_data("report.pdf"))
        return [n.node_id for n in nodes]

    assert ids(chunk_size=400) == ids(chunk_size=400)
    assert ids(chunk_size=400)[0] == stable_id(stable_id("report.pdf#page=1") + "#chunk=0")
    assert len(ids(chunk_by="block", chunk_size=400)) > len(ids(chunk_by="section",
                                                               chunk_size=400))


def test_per_file_documents_chunk_across_pages():
    docs = reader(split_pages=False).load_data("report.pdf")
    nodes = DeepSeekOCRNodeParser(chunk_size=4000, flat_metadata=False
                                  ).get_nodes_from_documents(docs)
    spans = [n.metadata["page_span"] for n in nodes]
    assert [2, 3] in spans
    crossing = nodes[spans.index([2, 3])]
    assert [b["page"] for b in crossing.metadata["boxes"]] == [2, 3]


def test_plain_documents_from_elsewhere_are_chunked_as_markdown():
    plain = LIDocument(text="# Notes\n\nFirst point.\n\n## More\n\nSecond point.",
                       metadata={"source": "notes.md"})
    nodes = DeepSeekOCRNodeParser(chunk_size=1000).get_nodes_from_documents([plain])
    assert [n.metadata["heading_path"] for n in nodes] == ['["Notes"]', '["Notes","More"]']
    assert "boxes" not in nodes[0].metadata


def test_ingestion_pipeline_into_vector_store_index_retrieves_the_table():
    embed = HashingEmbedding()
    pipeline = IngestionPipeline(
        transformations=[DeepSeekOCRNodeParser(chunk_size=400), embed])
    nodes = pipeline.run(documents=reader().load_data("report.pdf"))
    assert nodes and all(n.embedding is not None and len(n.embedding) == embed.dim
                         for n in nodes)
    index = VectorStoreIndex(nodes, embed_model=embed)
    hits = index.as_retriever(similarity_top_k=2).retrieve("Zanzibar Widgets revenue Q1")
    top = hits[0].node
    assert "| Zanzibar | Widgets | 150.5 | 250.25 |" in top.text
    assert top.metadata["page"] == 1 and rich_metadata(top.metadata)["boxes"][0]["page"] == 1
    assert "Zanzibar" in top.metadata["table_html"]
    # a stored node serialises: everything in metadata is JSON
    json.dumps(top.metadata)


def test_works_as_a_simple_directory_reader_file_extractor(tmp_path):
    from llama_index.core import SimpleDirectoryReader

    (tmp_path / "report.pdf").write_bytes(b"%PDF stand-in")
    stub = StubConverter()
    docs = SimpleDirectoryReader(
        str(tmp_path), file_extractor={".pdf": DeepSeekOCRReader(converter=stub)}
    ).load_data()
    assert stub.converted == [str(tmp_path / "report.pdf")]
    assert [d.metadata["page"] for d in docs] == [1, 2, 3]
    assert docs[0].metadata["file_name"] == "report.pdf" and "dsocr" in docs[0].metadata
    assert "dsocr" not in docs[0].get_metadata_str(MetadataMode.EMBED)
