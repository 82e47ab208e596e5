"""Real vector stores take the connectors' output as it is, and re-ingesting never duplicates.

Chroma (in-memory `EphemeralClient`) and Qdrant (local mode, `:memory:`), each through
LangChain and LlamaIndex, with the offline hashing embedding. The pages are the shipped
born-digital PDF read by the real Converter (text layer), plus the chart's figure block, so
text chunks, the table merged across pages and a figure crop all go into the stores.
"""

from __future__ import annotations

import uuid

import pytest
from connector_samples import BORN_DIGITAL, ReplayConverter

chromadb = pytest.importorskip("chromadb")
qdrant_client = pytest.importorskip("qdrant_client")
pytest.importorskip("langchain_chroma")
pytest.importorskip("langchain_qdrant")
pytest.importorskip("llama_index.vector_stores.chroma")
pytest.importorskip("llama_index.vector_stores.qdrant")

from langchain_chroma import Chroma  # noqa: E402
from langchain_core.indexing import InMemoryRecordManager, index  # noqa: E402
from langchain_qdrant import QdrantVectorStore as LCQdrant  # noqa: E402
from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline  # noqa: E402
from llama_index.core.schema import ImageNode  # noqa: E402
from llama_index.core.storage.docstore import SimpleDocumentStore  # noqa: E402
from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: E402
from llama_index.vector_stores.qdrant import QdrantVectorStore as LIQdrant  # noqa: E402

from dsocr_connectors.langchain import (  # noqa: E402
    DeepSeekOCRLoader,
    DeepSeekOCRTextSplitter,
    HashingEmbeddings,
)
from dsocr_connectors.llama_index import (  # noqa: E402
    DeepSeekOCRNodeParser,
    DeepSeekOCRReader,
    HashingEmbedding,
)
from dsocr_connectors.metadata import rich_metadata  # noqa: E402

SOURCE = str(BORN_DIGITAL)


@pytest.fixture(scope="module")
def converter():
    return ReplayConverter()


def lc_chunks(converter):
    pages = DeepSeekOCRLoader(SOURCE, converter=converter).load()
    return pages, DeepSeekOCRTextSplitter(chunk_size=600).split_documents(pages)


def li_documents(converter):
    return DeepSeekOCRReader(converter=converter).load_data(SOURCE)


def collection_name() -> str:
    return "dsocr-" + uuid.uuid4().hex[:12]


def check_langchain_hits(store):
    (hit,) = store.similarity_search("R-29 13.15 over guideline", k=1)
    meta = rich_metadata(hit.metadata)
    assert "| R-29 | 10 | 13.15 | over |" in hit.page_content
    assert meta["page_span"] == [1, 2] or meta["page_span"] == [2, 2]
    assert meta["boxes"][0]["bbox"] and meta["section"].endswith("2. Measurements")


def test_langchain_chroma_takes_pages_and_chunks_and_upserts(converter):
    pages, chunks = lc_chunks(converter)
    client = chromadb.EphemeralClient()
    embed = HashingEmbeddings()
    # the call from the issue that failed on list metadata: chunks, and the pages themselves
    store = Chroma.from_documents(chunks, embed, client=client, collection_name=collection_name())
    Chroma.from_documents(pages, embed, client=client, collection_name=collection_name())
    count = store._collection.count()
    assert count == len(chunks) and any("image_base64" in c.metadata for c in chunks)
    store.add_documents(lc_chunks(converter)[1])  # the same file again
    assert store._collection.count() == count
    check_langchain_hits(store)
    figure = store.get(where={"image_mime_type": "image/png"})
    assert len(figure["ids"]) == 1 and figure["metadatas"][0]["page"] == 1  # 0-based: page 2


def test_langchain_index_api_is_exactly_once(converter):
    store = Chroma(collection_name=collection_name(), embedding_function=HashingEmbeddings(),
                   client=chromadb.EphemeralClient())
    manager = InMemoryRecordManager(namespace="dsocr")
    manager.create_schema()
    chunks = lc_chunks(converter)[1]
    first = index(chunks, manager, store, cleanup="incremental", source_id_key="source")
    again = index(lc_chunks(converter)[1], manager, store, cleanup="incremental",
                  source_id_key="source")
    assert first["num_added"] == len(chunks) and again["num_added"] == 0
    assert again["num_skipped"] == len(chunks) and store._collection.count() == len(chunks)


def test_langchain_qdrant_local_mode_upserts(converter):
    chunks = lc_chunks(converter)[1]
    name = collection_name()
    store = LCQdrant.from_documents(chunks, HashingEmbeddings(), location=":memory:",
                                    collection_name=name)
    store.add_documents(lc_chunks(converter)[1])
    assert store.client.count(name).count == len(chunks)
    check_langchain_hits(store)


def li_check(index_, embed):
    retriever = index_.as_retriever(similarity_top_k=3, embed_model=embed)
    hits = retriever.retrieve("R-29 13.15 over guideline")
    assert any("| R-29 | 10 | 13.15 | over |" in h.node.get_content() for h in hits)


def test_llama_index_chroma_with_image_nodes_and_docstore_upserts(converter):
    collection = chromadb.EphemeralClient().get_or_create_collection(collection_name())
    vector_store = ChromaVectorStore(chroma_collection=collection)
    embed = HashingEmbedding()
    pipeline = IngestionPipeline(
        transformations=[DeepSeekOCRNodeParser(chunk_size=600), embed],
        vector_store=vector_store, docstore=SimpleDocumentStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS)
    nodes = pipeline.run(documents=li_documents(converter))
    assert any(isinstance(n, ImageNode) and n.image for n in nodes)
    count = collection.count()
    assert count == len(nodes)
    assert pipeline.run(documents=li_documents(converter)) == []  # unchanged: skipped
    edited = ReplayConverter(document=converter.document.model_copy(deep=True))
    results = edited.document.pages[1].blocks[3]
    results.content += " Addendum: R-31 added."  # page 2 read again, differently
    changed = li_documents(edited)
    redone = pipeline.run(documents=changed)  # page 2 changed: its nodes replaced, not added
    assert redone and all(n.ref_doc_id == changed[1].id_ for n in redone)
    assert collection.count() == count
    stored = collection.get(where={"page": 2})
    assert sum("Addendum" in doc for doc in stored["documents"]) == 1
    index_ = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed)
    li_check(index_, embed)


def test_llama_index_chroma_same_node_ids_do_not_duplicate(converter):
    collection = chromadb.EphemeralClient().get_or_create_collection(collection_name())
    storage = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=collection))
    embed = HashingEmbedding()
    parser = DeepSeekOCRNodeParser(chunk_size=600)
    nodes = parser.get_nodes_from_documents(li_documents(converter))
    VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)
    again = parser.get_nodes_from_documents(li_documents(converter))
    assert [n.node_id for n in again] == [n.node_id for n in nodes]
    VectorStoreIndex(again, storage_context=storage, embed_model=embed)
    assert collection.count() == len(nodes)


def test_llama_index_qdrant_local_mode_upserts(converter):
    client = qdrant_client.QdrantClient(":memory:")
    name = collection_name()
    vector_store = LIQdrant(client=client, collection_name=name)
    embed = HashingEmbedding()

    def ingest():  # a fresh pipeline each time: nothing remembered but the stable ids
        pipeline = IngestionPipeline(
            transformations=[DeepSeekOCRNodeParser(chunk_size=600), embed],
            vector_store=vector_store)
        return pipeline.run(documents=li_documents(converter))

    nodes = ingest()
    assert client.count(name).count == len(nodes)
    ingest()
    assert client.count(name).count == len(nodes)
    li_check(VectorStoreIndex.from_vector_store(vector_store, embed_model=embed), embed)
