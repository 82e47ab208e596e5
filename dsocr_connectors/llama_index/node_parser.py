"""`DeepSeekOCRNodeParser`: reader Documents -> `TextNode`s cut by structure, and `ImageNode`s.

It reads the structured page (or file) back from each Document (`metadata["dsocr"]`, or
the text itself for the JSON export), chunks it with `splitters.chunk_document` (per block,
per section, or size-bounded; continued tables merged) and makes one TextNode per chunk with
citation metadata (`dsocr_connectors.metadata.chunk_metadata`): source, page, page_label,
page_span, block_types, heading_path, section, boxes / boxes_norm / boxes_px / boxes_pt,
table_html and table_markdown for tables, page_status, flags. Each figure whose crop the
reader carried becomes an `ImageNode` (the crop as base64 `image` or `image_path`, the
caption as text, the box in metadata).

Relationships: SOURCE is the Document the node came from; PREVIOUS/NEXT link the text
nodes of one Document; an ImageNode's PARENT is the text node holding its figure, which
lists it as a CHILD (the only hierarchy there is). Documents with no structure (from
another reader) are chunked as Markdown text with the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.node_parser.interface import NodeParser
from llama_index.core.schema import (
    BaseNode,
    Document,
    ImageNode,
    NodeRelationship,
    TextNode,
)
from llama_index.core.utils import get_tqdm_iterable

from dsocr_connectors.document import BlockType
from dsocr_connectors.document import Document as DsocrDocument
from dsocr_connectors.metadata import (
    NOT_EMBEDDED,
    chunk_metadata,
    figure_items,
    flatten,
    plain_chunk_metadata,
    stable_id,
)
from dsocr_connectors.payload import payload_document, payload_figures
from splitters import FURNITURE, Chunk, ChunkBy, chunk_document
from splitters.plain import chunk_text


def stable_node_id(i: int, doc: BaseNode) -> str:
    """A UUID of `<document id>#chunk=<i>`: the same file gives the same ids on every run."""
    return stable_id(f"{doc.node_id}#chunk={i}")


class DeepSeekOCRNodeParser(NodeParser):
    """Cut `DeepSeekOCRReader` Documents into TextNodes that follow the page structure.

    Example:
        parser = DeepSeekOCRNodeParser(chunk_by="section", chunk_size=1000)
        nodes = parser.get_nodes_from_documents(DeepSeekOCRReader().load_data("a.pdf"))

    Attributes:
        chunk_by: "section" (default), "block" or "size" (see `splitters.ChunkBy`).
        chunk_size: the largest chunk, measured with `length`.
        chunk_overlap: trailing whole units repeated at the start of the next chunk.
        min_chunk_size: shorter chunks join a neighbour; None: `min(50, chunk_size // 10)`.
        language: the language paragraphs are split into sentences by.
        length: None (characters), a tokenizer, a path to a tokenizer.json, or a callable.
        skip_types: block types left out (default: page headers, footers, page numbers).
        flat_metadata: metadata values str/int/float/bool only (lists, dicts as JSON text).
        include_figures: make an ImageNode for each figure crop the reader carried.
        chunker: `(Document) -> list[Chunk]` replacing `chunk_document` with the options above.
    """

    chunk_by: ChunkBy = Field(default=ChunkBy.SECTION, description="block, section or size")
    chunk_size: int = Field(default=1000, gt=0, description="largest chunk, in `length` units")
    chunk_overlap: int = Field(default=0, ge=0, description="overlap, in whole units")
    min_chunk_size: int | None = Field(default=None, ge=0, description="smallest chunk")
    language: str = Field(default="en", description="sentence splitting language")
    length: Any = Field(default=None, exclude=True, description="how text is measured")
    skip_types: list[BlockType] = Field(default_factory=lambda: sorted(FURNITURE))
    flat_metadata: bool = Field(default=True, description="str/int/float/bool values only")
    include_figures: bool = Field(default=True, description="ImageNodes for figure crops")
    chunker: Callable[[DsocrDocument], list[Chunk]] | None = Field(default=None, exclude=True)
    id_func: Callable[[int, BaseNode], str] = Field(default=stable_node_id, exclude=True)

    @classmethod
    def class_name(cls) -> str:
        return "DeepSeekOCRNodeParser"

    def _chunks(self, doc: DsocrDocument) -> list[Chunk]:
        if self.chunker is not None:
            return self.chunker(doc)
        return chunk_document(doc, **self._options())

    def _options(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
                "length": self.length, "by": self.chunk_by, "skip_types": self.skip_types,
                "min_chunk_size": self.min_chunk_size, "language": self.language}

    def _metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return flatten(metadata) if self.flat_metadata else metadata

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Parsing nodes"):
            text = node.get_content()
            doc = payload_document(node.metadata, text)
            if doc is not None:
                chunks = self._chunks(doc)
                pieces = [(c, chunk_metadata(c, doc)) for c in chunks]
            else:
                source = str(node.metadata.get("source", node.node_id))
                chunks = chunk_text(text, source=source, **self._options())
                pieces = [(c, plain_chunk_metadata(c)) for c in chunks]
            excluded = self._excluded(node, [m for _, m in pieces])
            related = node.as_related_node_info()
            texts = [TextNode(
                id_=self.id_func(i, node), text=chunk.text, metadata=self._metadata(metadata),
                excluded_embed_metadata_keys=excluded, excluded_llm_metadata_keys=excluded,
                relationships={NodeRelationship.SOURCE: related},
            ) for i, (chunk, metadata) in enumerate(pieces)]
            out.extend(texts)
            if doc is not None and self.include_figures:
                out.extend(self._images(node, doc, chunks, texts, excluded))
        return out

    def _excluded(self, node: BaseNode, metadata: list[dict[str, Any]]) -> list[str]:
        ours = [k for k in NOT_EMBEDDED if k in node.metadata or any(k in m for m in metadata)]
        return list(dict.fromkeys(ours + node.excluded_embed_metadata_keys))

    def _images(self, node: BaseNode, doc: DsocrDocument, chunks: list[Chunk],
                texts: list[TextNode], excluded: list[str]) -> list[ImageNode]:
        images = []
        for item in figure_items(doc, payload_figures(node.metadata), chunks):
            if item.image_base64 is None and item.image_path is None:
                continue
            image = ImageNode(
                id_=stable_id(f"{node.node_id}#figure={item.page}.{item.block}"),
                text=item.text, image=item.image_base64, image_path=item.image_path,
                image_mimetype=item.mimetype, metadata=self._metadata(item.metadata),
                excluded_embed_metadata_keys=excluded, excluded_llm_metadata_keys=excluded,
                relationships={NodeRelationship.SOURCE: node.as_related_node_info()},
            )
            if item.holder is not None:
                holder = texts[item.holder]
                image.relationships[NodeRelationship.PARENT] = holder.as_related_node_info()
                children = holder.relationships.setdefault(NodeRelationship.CHILD, [])
                children.append(image.as_related_node_info())  # type: ignore[union-attr]
            images.append(image)
        return images

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode],
                                  parent_doc_map: dict[str, Document]) -> list[BaseNode]:
        """LlamaIndex's own pass (char offsets, inherited metadata, PREVIOUS/NEXT) over the
        text nodes; image nodes only inherit the Document's metadata."""
        texts = [n for n in nodes if not isinstance(n, ImageNode)]
        super()._postprocess_parsed_nodes(texts, parent_doc_map)
        for node in nodes:
            parent = parent_doc_map.get(node.ref_doc_id or "")
            if isinstance(node, ImageNode) and parent is not None and self.include_metadata:
                node.metadata = {**parent.metadata, **node.metadata}
        return nodes
