"""`DeepSeekOCRNodeParser`: reader Documents -> `TextNode`s cut by the document's structure.

It reads the structured page (or file) back from each Document (`metadata["dsocr"]`, or
the text itself for the JSON export), chunks it with `splitters.chunk_document` (per block,
per section, or size-bounded) and makes one TextNode per chunk with citation metadata
(`dsocr_connectors.metadata.chunk_metadata`): source, page, page_label, page_span,
block_types, heading_path, section, boxes / boxes_norm / boxes_px / boxes_pt, table_html and
table_markdown for tables, page_status, flags. Relationships: SOURCE and PARENT are the
Document the node came from (the page Document with `split_pages=True`), PREVIOUS/NEXT link
the nodes of one Document. Documents with no structure (from another reader) are chunked as
Markdown text with the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.node_parser.interface import IdFuncCallable, NodeParser
from llama_index.core.schema import BaseNode, NodeRelationship, TextNode
from llama_index.core.utils import get_tqdm_iterable

from dsocr_connectors.document import BlockType, Document
from dsocr_connectors.metadata import (
    NOT_EMBEDDED,
    chunk_metadata,
    payload_document,
    plain_chunk_metadata,
)
from splitters import FURNITURE, Chunk, ChunkBy, chunk_document
from splitters.plain import chunk_text


def stable_node_id(i: int, doc: BaseNode) -> str:
    """`<document id>#chunk=<i>`: the same file gives the same node ids on every run."""
    return f"{doc.node_id}#chunk={i}"


class DeepSeekOCRNodeParser(NodeParser):
    """Cut `DeepSeekOCRReader` Documents into TextNodes that follow the page structure.

    Example:
        parser = DeepSeekOCRNodeParser(chunk_by="section", chunk_size=1000)
        nodes = parser.get_nodes_from_documents(DeepSeekOCRReader().load_data("a.pdf"))

    Attributes:
        chunk_by: "section" (default), "block" or "size" (see `splitters.ChunkBy`).
        chunk_size: the largest chunk, measured with `length`.
        chunk_overlap: trailing whole units repeated at the start of the next chunk.
        length: None (characters), a tokenizer, a path to a tokenizer.json, or a callable.
        skip_types: block types left out (default: page headers, footers, page numbers).
        chunker: `(Document) -> list[Chunk]` replacing `chunk_document` with the options above.
    """

    chunk_by: ChunkBy = Field(default=ChunkBy.SECTION, description="block, section or size")
    chunk_size: int = Field(default=1000, gt=0, description="largest chunk, in `length` units")
    chunk_overlap: int = Field(default=0, ge=0, description="overlap, in whole units")
    length: Any = Field(default=None, exclude=True, description="how text is measured")
    skip_types: list[BlockType] = Field(default_factory=lambda: sorted(FURNITURE))
    chunker: Callable[[Document], list[Chunk]] | None = Field(default=None, exclude=True)
    id_func: IdFuncCallable = Field(default=stable_node_id, description="node id function")

    @classmethod
    def class_name(cls) -> str:
        return "DeepSeekOCRNodeParser"

    def _chunks(self, doc: Document) -> list[Chunk]:
        if self.chunker is not None:
            return self.chunker(doc)
        return chunk_document(doc, **self._options())

    def _options(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
                "length": self.length, "by": self.chunk_by, "skip_types": self.skip_types}

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Parsing nodes"):
            text = node.get_content()
            doc = payload_document(node.metadata, text)
            if doc is not None:
                pieces = [(c, chunk_metadata(c, doc)) for c in self._chunks(doc)]
            else:
                source = str(node.metadata.get("source", node.node_id))
                chunks = chunk_text(text, source=source, **self._options())
                pieces = [(c, plain_chunk_metadata(c)) for c in chunks]
            related = node.as_related_node_info()
            ours = [k for k in NOT_EMBEDDED if k in node.metadata or any(k in m for _, m in pieces)]
            for i, (chunk, metadata) in enumerate(pieces):
                out.append(TextNode(
                    id_=self.id_func(i, node),
                    text=chunk.text,
                    metadata=metadata,
                    excluded_embed_metadata_keys=list(dict.fromkeys(
                        ours + node.excluded_embed_metadata_keys)),
                    excluded_llm_metadata_keys=list(dict.fromkeys(
                        ours + node.excluded_llm_metadata_keys)),
                    relationships={NodeRelationship.SOURCE: related,
                                   NodeRelationship.PARENT: related},
                ))
        return out
