"""Connector inputs and shapes: fsspec URLs (memory://, a real HTTP server on loopback), blobs
through LangChain's GenericLoader, PyMuPDFLoader metadata keys, a serialisable reader,
`add_start_index`, and figure crops in unstructured elements."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest
from connector_samples import BORN_DIGITAL, ReplayConverter

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")

from dsocr_connectors.langchain import (  # noqa: E402
    DeepSeekOCRLoader,
    DeepSeekOCRParser,
    DeepSeekOCRTextSplitter,
)
from dsocr_connectors.llama_index import DeepSeekOCRReader  # noqa: E402
from dsocr_connectors.metadata import rich_metadata  # noqa: E402

PYMUPDF_KEYS = {"source": str, "file_path": str, "page": int, "total_pages": int,
                "producer": str, "creator": str, "creationdate": str, "moddate": str,
                "title": str, "author": str, "subject": str, "keywords": str, "format": str}


def test_memory_url_through_both_frameworks():
    fs = fsspec.filesystem("memory")
    fs.pipe("/inbox/report.pdf", BORN_DIGITAL.read_bytes())
    url = "memory://inbox/report.pdf"
    docs = DeepSeekOCRReader().load_data(url)
    assert [d.metadata["page"] for d in docs] == [1, 2] and docs[0].metadata["source"] == url
    assert "Spring Water Quality Report" in docs[0].text
    pages = DeepSeekOCRLoader(url).load()
    meta = pages[0].metadata
    assert {k: type(meta[k]) for k in PYMUPDF_KEYS} == PYMUPDF_KEYS
    assert (meta["page"], meta["total_pages"], meta["title"]) == (
        0, 2, "Spring Water Quality Report")
    assert meta["creationdate"] == "2025-01-01T00:00:00+00:00" and meta["format"] == "PDF 1.7"


def test_missing_url_and_missing_protocol_package_are_failed_pages_naming_the_url():
    (missing,) = DeepSeekOCRReader().load_data("memory://inbox/none.pdf")
    assert missing.metadata["status"] == "failed"
    assert "memory://inbox/none.pdf" in missing.metadata["source"]
    pytest.importorskip("aiohttp")
    if shutil.which("s3fs") is None:  # s3fs is an optional extra, not installed by default
        try:
            import s3fs  # noqa: F401
        except ImportError:
            (s3,) = DeepSeekOCRLoader("s3://bucket/report.pdf").load()
            page = rich_metadata(s3.metadata)["dsocr"]["page"]
            assert "dsocr-connectors[s3]" in page["reason"] + str(page["errors"])


@pytest.fixture
def http_server(tmp_path):
    pytest.importorskip("aiohttp")
    shutil.copy(BORN_DIGITAL, tmp_path / "report.pdf")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_https_style_url_from_a_real_http_server(http_server):
    url = f"{http_server}/report.pdf"
    pages = DeepSeekOCRLoader(url).load()
    assert [p.metadata["page"] for p in pages] == [0, 1]
    assert pages[0].metadata["source"] == url and "Nitrate by site" in pages[0].page_content
    (doc,) = DeepSeekOCRReader(split_pages=False).load_data(url)
    assert doc.metadata["total_pages"] == 2


def test_parser_works_with_generic_loader(tmp_path):
    generic = pytest.importorskip("langchain_community.document_loaders.generic")
    for name in ("a.pdf", "b.pdf"):
        shutil.copy(BORN_DIGITAL, tmp_path / name)
    replay = ReplayConverter()
    loader = generic.GenericLoader.from_filesystem(
        str(tmp_path), glob="*.pdf", parser=DeepSeekOCRParser(converter=replay))
    docs = list(loader.lazy_load())
    assert sorted(replay.converted) == [str(tmp_path / "a.pdf"), str(tmp_path / "b.pdf")]
    assert len(docs) == 4 and {d.metadata["page"] for d in docs} == {0, 1}
    assert docs[0].metadata["title"] == "Spring Water Quality Report"  # the real file's
    assert DeepSeekOCRLoader(tmp_path / "a.pdf", converter=replay).parser is not None


def test_reader_is_a_serialisable_pydantic_reader():
    from llama_index.core.readers.base import BasePydanticReader, ReaderConfig

    reader = DeepSeekOCRReader(mode="tiny", dpi=100, split_pages=False, figures=None)
    assert isinstance(reader, BasePydanticReader)
    data = reader.to_dict()
    assert data["converter_options"] == {"mode": "tiny", "dpi": 100}
    assert data["class_name"] == "DeepSeekOCRReader" and data["split_pages"] is False
    again = DeepSeekOCRReader.from_dict(data)
    assert again.converter_options == reader.converter_options and again.figures is None
    config = ReaderConfig(reader=reader, reader_args=[str(BORN_DIGITAL)])
    assert config.to_dict()["loader"]["converter_options"]["dpi"] == 100
    assert '"export_type":"markdown"' in reader.to_json().replace(" ", "")


def test_add_start_index_points_into_the_page_text():
    replay = ReplayConverter()
    pages = DeepSeekOCRLoader(str(BORN_DIGITAL), converter=replay).load()
    chunks = DeepSeekOCRTextSplitter(chunk_size=600, add_start_index=True,
                                     include_figures=False).split_documents(pages)
    texts = {p.metadata["page"]: p.page_content for p in pages}
    verbatim = [c for c in chunks if c.page_content in texts[c.metadata["page"]]]
    assert verbatim and all(c.metadata["start_index"] == texts[c.metadata["page"]].find(
        c.page_content) for c in verbatim)
    tables = [c for c in chunks if c not in verbatim]  # rows rendered as pipe tables
    assert tables
    for chunk in tables:  # the start: its heading, or its first body row's first cell
        lines = chunk.page_content.splitlines()
        first = lines[0].lstrip("# ") if lines[0].startswith("#") else next(
            line for line in lines if line.startswith("| R-")).split("|")[1].strip()
        start = chunk.metadata["start_index"]
        assert texts[chunk.metadata["page"]][start:start + len(first)] == first


def test_unstructured_image_elements_carry_the_crop():
    pytest.importorskip("unstructured.documents.elements")  # the extra (CI installs it)
    unstructured = pytest.importorskip("dsocr_connectors.unstructured")
    replay = ReplayConverter()
    elements = unstructured.partition_dsocr(str(BORN_DIGITAL), converter=replay,
                                            extract_image_block_to_payload=True)
    (image,) = [e for e in elements if type(e).__name__ == "Image"]
    assert image.metadata.image_mime_type == "image/png"
    assert len(image.metadata.image_base64) > 1000 and image.metadata.page_number == 2
    plain = unstructured.partition_dsocr(str(BORN_DIGITAL), converter=replay)
    assert all(getattr(e.metadata, "image_base64", None) is None for e in plain)


def test_figure_crops_as_image_nodes_linked_to_their_chunk(tmp_path):
    from llama_index.core.schema import ImageNode, NodeRelationship
    from PIL import Image

    from dsocr_connectors.llama_index import DeepSeekOCRNodeParser

    replay = ReplayConverter()
    docs = DeepSeekOCRReader(converter=replay, figures="path",
                             figure_dir=str(tmp_path)).load_data(str(BORN_DIGITAL))
    assert "![figure](" in docs[1].text  # the page Markdown links the written crop
    nodes = DeepSeekOCRNodeParser(chunk_size=600).get_nodes_from_documents(docs)
    (image,) = [n for n in nodes if isinstance(n, ImageNode)]
    assert image.image is None and image.image_mimetype == "image/png"
    with Image.open(image.image_path) as crop:
        assert crop.size == (601, 340)  # the chart box of a 144 dpi rendering
    meta = rich_metadata(image.metadata)
    assert meta["page"] == 2 and meta["boxes"] == [{"page": 2, "bbox": [158, 363, 662, 565]}]
    assert image.text.startswith("Figure: Figure 1: Nitrate at sites R-27 to R-30")
    holder = next(n for n in nodes if n.node_id == image.relationships[
        NodeRelationship.PARENT].node_id)
    assert [c.node_id for c in holder.relationships[NodeRelationship.CHILD]] == [image.node_id]
    assert image.relationships[NodeRelationship.SOURCE].node_id == docs[1].id_
    assert NodeRelationship.NEXT not in image.relationships  # not in the text nodes' chain
    base64_nodes = DeepSeekOCRNodeParser(chunk_size=600).get_nodes_from_documents(
        DeepSeekOCRReader(converter=replay).load_data(str(BORN_DIGITAL)))
    (inline,) = [n for n in base64_nodes if isinstance(n, ImageNode)]
    assert inline.image and inline.image_path is None and inline.node_id == image.node_id
