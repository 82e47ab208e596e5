"""RAG over a PDF with LlamaIndex: DeepSeek-OCR reader -> structure-aware nodes -> vector index.

Runs with no model (born-digital pages come from the PDF text layer) and no download (a
hashing embedding, for demos only). Prints the retrieved chunks with page and box citations.
    python examples/rag_llamaindex.py [PDF] [--question Q] [--model DIR]
"""

import argparse
from pathlib import Path

from llama_index.core import VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline

from dsocr_connectors.llama_index import DeepSeekOCRNodeParser, DeepSeekOCRReader, HashingEmbedding


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default=Path(__file__).with_name("born_digital.pdf"))
    parser.add_argument("--question", default="Which sites are over the nitrate guideline?")
    parser.add_argument("--model", help="DeepSeek-OCR model directory (default: no model)")
    args = parser.parse_args(argv)
    reader = DeepSeekOCRReader(model=args.model) if args.model else DeepSeekOCRReader()
    embed = HashingEmbedding()
    pipeline = IngestionPipeline(transformations=[DeepSeekOCRNodeParser(chunk_size=800), embed])
    index = VectorStoreIndex(pipeline.run(documents=reader.load_data(args.pdf)), embed_model=embed)
    for hit in index.as_retriever(similarity_top_k=3).retrieve(args.question):
        meta = hit.node.metadata
        boxes = "; ".join(f"page {b['page']} {b['bbox']}" for b in meta["boxes"])
        print(f"[{hit.score:.2f}] {meta['file_name']} p.{meta['page_label']} "
              f"({meta['section'] or 'no section'}) boxes: {boxes or 'none'}")
        print("    " + hit.node.text[:240].replace("\n", "\n    "))


if __name__ == "__main__":
    main()
