"""RAG over a PDF with LlamaIndex: DeepSeek-OCR reader -> structure-aware nodes -> vector index.

Runs with no model (born-digital pages come from the PDF text layer) and no download (a
hashing embedding, for demos only). Prints the figure nodes (crops of the page image), the
table continued across pages as one merged chunk, and the retrieved chunks with page and box
citations. Pages that were not read (a scan, with no model) are counted at the end, and the
exit code is then 2.
    python examples/rag_llamaindex.py [PDF] [--question Q] [--model DIR]
"""

import argparse
import sys
from pathlib import Path

from llama_index.core import VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.schema import ImageNode

from dsocr_connectors.llama_index import DeepSeekOCRNodeParser, DeepSeekOCRReader, HashingEmbedding
from dsocr_connectors.metadata import rich_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default=Path(__file__).with_name("born_digital.pdf"))
    parser.add_argument("--question", default="Which sites are over the nitrate guideline?")
    parser.add_argument("--model", help="DeepSeek-OCR model directory (default: no model)")
    args = parser.parse_args(argv)
    reader = DeepSeekOCRReader(model=args.model) if args.model else DeepSeekOCRReader()
    embed = HashingEmbedding()
    pipeline = IngestionPipeline(transformations=[DeepSeekOCRNodeParser(chunk_size=800), embed])
    documents = reader.load_data(args.pdf)
    unread = [str(d.metadata["page"]) for d in documents if d.metadata["status"] == "failed"]
    nodes = pipeline.run(documents=documents)
    images = [n for n in nodes if isinstance(n, ImageNode)]
    print(f"{len(nodes) - len(images)} text nodes, {len(images)} image nodes (figures)")
    for image in images:
        meta = rich_metadata(image.metadata)
        print(f"figure p.{meta['page_label']} box {meta['boxes'][0]['bbox']}: "
              f"{meta['image_width']}x{meta['image_height']} px PNG, "
              f"caption {meta['figure_caption'] or '(none)'!r}")
    for node in nodes:
        meta = rich_metadata(node.metadata)
        if "table_html" in meta and meta["page_span"][0] != meta["page_span"][1]:
            rows = [line for line in node.text.splitlines() if line.startswith("| ")]
            print(f"table across pages {meta['page_span']}: {len(rows) - 1} rows in one chunk "
                  f"({meta['table_part'] if 'table_part' in meta else 'whole'})")
    text_nodes = [n for n in nodes if not isinstance(n, ImageNode)]
    if text_nodes:
        index = VectorStoreIndex(text_nodes, embed_model=embed)
        for hit in index.as_retriever(similarity_top_k=3).retrieve(args.question):
            meta = rich_metadata(hit.node.metadata)
            boxes = "; ".join(f"page {b['page']} {b['bbox']}" for b in meta["boxes"])
            print(f"[{hit.score:.2f}] {meta['file_name']} p.{meta['page_label']} "
                  f"({meta['section'] or 'no section'}) boxes: {boxes or 'none'}")
            print("    " + hit.node.text[:240].replace("\n", "\n    "))
    if unread:
        print(f"{len(unread)} of {len(documents)} pages were not read (pages {', '.join(unread)}; "
              "the logged warning says why): pass --model DIR to read scans")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
