"""Load a PDF with the LangChain loader, split it by structure, and search the chunks.

Runs with no model (born-digital pages come from the PDF text layer) and no download (a
hashing embedding, for demos only). Prints each hit with its page and box citations.
    python examples/langchain_split.py [PDF] [--question Q] [--model DIR]
"""

import argparse
from pathlib import Path

from langchain_core.vectorstores import InMemoryVectorStore

from dsocr_connectors.langchain import (
    DeepSeekOCRLoader,
    DeepSeekOCRTextSplitter,
    HashingEmbeddings,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", nargs="?", default=Path(__file__).with_name("born_digital.pdf"))
    parser.add_argument("--question", default="Which sites are over the nitrate guideline?")
    parser.add_argument("--model", help="DeepSeek-OCR model directory (default: no model)")
    args = parser.parse_args(argv)
    options = {"model": args.model} if args.model else {}
    chunks = DeepSeekOCRTextSplitter(chunk_size=800).split_documents(
        DeepSeekOCRLoader(args.pdf, **options).lazy_load())
    kinds = sorted({t for c in chunks for t in c.metadata["block_types"]})
    print(f"{len(chunks)} chunks of {', '.join(kinds)}")
    store = InMemoryVectorStore.from_documents(chunks, HashingEmbeddings())
    for doc, score in store.similarity_search_with_score(args.question, k=3):
        meta = doc.metadata
        boxes = "; ".join(f"page {b['page']} {b['bbox']}" for b in meta["boxes"])
        print(f"[{score:.2f}] {meta['source']} p.{meta['page_label']} (index {meta['page']}) "
              f"{' > '.join(meta['heading_path']) or 'no section'} boxes: {boxes or 'none'}")
        print("    " + doc.page_content[:240].replace("\n", "\n    "))


if __name__ == "__main__":
    main()
