"""Load a PDF with the LangChain loader, split it by structure, and search the chunks.

Runs with no model (born-digital pages come from the PDF text layer) and no download (a
hashing embedding, for demos only). Prints the figure documents (crops in metadata), the
table continued across pages as one merged chunk, and each hit with page and box citations.
Pages that were not read (a scan, with no model) are counted at the end, and the exit code
is then 2.
    python examples/langchain_split.py [PDF] [--question Q] [--model DIR]
"""

import argparse
import sys
from pathlib import Path

from langchain_core.vectorstores import InMemoryVectorStore

from dsocr_connectors.langchain import (
    DeepSeekOCRLoader,
    DeepSeekOCRTextSplitter,
    HashingEmbeddings,
)
from dsocr_connectors.metadata import rich_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default=Path(__file__).with_name("born_digital.pdf"))
    parser.add_argument("--question", default="Which sites are over the nitrate guideline?")
    parser.add_argument("--model", help="DeepSeek-OCR model directory (default: no model)")
    args = parser.parse_args(argv)
    options = {"model": args.model} if args.model else {}
    pages = DeepSeekOCRLoader(args.pdf, **options).load()
    unread = [str(p.metadata["page"] + 1) for p in pages if p.metadata["status"] == "failed"]
    chunks = DeepSeekOCRTextSplitter(chunk_size=800).split_documents(pages)
    figures = [c for c in chunks if "image_base64" in c.metadata]
    kinds = sorted({t for c in chunks for t in rich_metadata(c.metadata)["block_types"]})
    print(f"{len(chunks) - len(figures)} chunks of {', '.join(kinds) or 'nothing'}; {len(figures)} figures")
    for figure in figures:
        meta = rich_metadata(figure.metadata)
        print(f"figure p.{meta['page_label']} box {meta['boxes'][0]['bbox']}: "
              f"{meta['image_width']}x{meta['image_height']} px "
              f"({len(meta['image_base64'])} base64 chars), "
              f"caption {meta['figure_caption'] or '(none)'!r}")
    for chunk in chunks:
        meta = rich_metadata(chunk.metadata)
        if "table_html" in meta and meta["page_span"][0] != meta["page_span"][1]:
            rows = [line for line in chunk.page_content.splitlines() if line.startswith("| ")]
            print(f"table across pages {meta['page_span']}: {len(rows) - 1} rows in one chunk")
    texts = [c for c in chunks if c not in figures]
    if texts:
        store = InMemoryVectorStore.from_documents(texts, HashingEmbeddings())
        for doc, score in store.similarity_search_with_score(args.question, k=3):
            meta = rich_metadata(doc.metadata)
            boxes = "; ".join(f"page {b['page']} {b['bbox']}" for b in meta["boxes"])
            print(f"[{score:.2f}] {meta['source']} p.{meta['page_label']} (index {meta['page']}) "
                  f"{' > '.join(meta['heading_path']) or 'no section'} boxes: {boxes or 'none'}")
            print("    " + doc.page_content[:240].replace("\n", "\n    "))
    if unread:
        print(f"{len(unread)} of {len(pages)} pages were not read (pages {', '.join(unread)}; "
              "the logged warning says why): pass --model DIR to read scans")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
