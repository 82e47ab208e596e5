"""The text layer, measured on born-digital PDFs made like TeX, office suites and invoice
generators (`tests/layer_samples.py`), whose content is known.

Three parts:
- `text`: the no-model path. Per sample: the share of the layer's words kept as words in
  the Markdown, the reading order, table rows kept as rows, and milliseconds per page
  (text layer read, tables, layout; rendering excluded), beside pymupdf4llm (legacy mode,
  its layout model off) when it is installed.
- `reconcile`: the model path without a model. Each page's truth is written in the model's
  grammar with OCR errors injected (`layer_outputs.model_output`: "rn" read as "m", "l" as
  "1", dropped accents, a skipped stretch, a hallucinated sentence, jittered boxes), parsed
  by the real parser and reconciled with the page's text layer. Reported: characters
  confirmed and corrected, the character error rate against the truth before and after,
  substitutions repaired, skips and hallucinations flagged.
- `model` (with `--model DIR`, on a GPU machine with real weights): the same PDFs read by
  DeepSeek-OCR through the pipeline (every page by the model, `ocr="always"`) and reconciled
  with their text layers: characters confirmed and corrected, blocks per status, flags, and
  the character error rate against the truth before and after reconciliation.

    python -m benchmarks.text_layer [--part text|reconcile|all] [--seeds 5] [--json out.json]
    python -m benchmarks.text_layer --part model --model /path/to/DeepSeek-OCR [--mode base]
"""

from __future__ import annotations

import argparse
import json
import time

from rapidfuzz.distance import Levenshtein

import loaders
from dsocr_connectors.document import BlockType, Page
from dsocr_connectors.parsing import parse_page
from dsocr_connectors.reconcile import reconcile_page
from dsocr_connectors.reconcile.markup import CELL, MATH, visible_text
from dsocr_connectors.text_layer import page_from_text_layer
from tests import layer_outputs, layer_samples

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."


def text_path(repeats: int = 5) -> list[dict]:
    """No-model Markdown quality and speed per sample (see the module docstring)."""
    rows = []
    for make in layer_samples.ALL_SAMPLES:
        sample = make()
        truth_words = layer_outputs.layer_words(sample.data)
        loaded = list(loaders.iter_pages(sample.data, dpi=18))
        pages = [page_from_text_layer(p) for p in loaded]
        markdown = [p.to_markdown() for p in pages]
        recall = [layer_outputs.word_recall(w, md) for w, md in zip(truth_words, markdown)]
        order = [layer_outputs.in_order(e, md) for e, md in zip(sample.pages, markdown)]
        rows.append({
            "sample": sample.name, "pages": len(pages),
            "words_kept": round(min(recall), 4), "in_order": round(min(order), 4),
            "table_rows_kept": _table_rows_kept(sample, pages),
            "ms_per_page": round(_ms_per_page(sample.data, repeats), 2),
        })
    _add_pymupdf4llm(rows, repeats)
    return rows


SCENARIOS = {
    "clean": {"errors": False},  # the model read every character right
    "substitutions": {"skip": False, "hallucinate": False},  # OCR confusions only
    "all": {},  # confusions, a skipped stretch and a hallucinated sentence per page
    "loose_boxes": {"skip": False, "hallucinate": False, "jitter": 15},  # boxes off by ~1 line
}


def reconciliation(seeds: int = 5) -> dict:
    """Simulated model outputs reconciled with the text layer (see the module docstring),
    for each of `SCENARIOS`."""
    samples = [(make(), None) for make in layer_samples.ALL_SAMPLES]
    samples = [(s, list(loaders.iter_pages(s.data, dpi=18))) for s, _ in samples]
    results = {}
    for name, options in SCENARIOS.items():
        totals = dict(pages=0, chars=0, confirmed=0, corrected=0, truth_chars=0,
                      errors_before=0, errors_after=0, substitutions=0, repaired=0, skipped=0,
                      skip_flagged=0, hallucinated=0, hallucination_flagged=0, blocks={})
        for sample, loaded in samples:
            for seed in range(seeds):
                for number, page in enumerate(loaded, start=1):
                    raw, injected = layer_outputs.model_output(sample, number, seed=seed,
                                                               **options)
                    read = parse_page(raw, number=number, image_size=page.image.size,
                                      prompt=PROMPT)
                    read = read.model_copy(update={"width_pt": page.width_pt,
                                                   "height_pt": page.height_pt,
                                                   "engine": "native"})
                    checked = reconcile_page(read, page.text_layer)
                    _add_page(totals, sample.pages[number - 1], read, checked, injected)
        chars = max(1, totals["chars"])
        results[name] = {
            **totals,
            "confirmed_share": round(totals["confirmed"] / chars, 4),
            "corrected_share": round(totals["corrected"] / chars, 4),
            "cer_before": round(totals["errors_before"] / totals["truth_chars"], 5),
            "cer_after": round(totals["errors_after"] / totals["truth_chars"], 5),
        }
    return results


def model_pages(model: str, mode: str = "gundam", device: str | None = None,
                max_new_tokens: int | None = None) -> dict:
    """The samples read by the real model and reconciled (see the module docstring)."""
    import tempfile
    from pathlib import Path

    from dsocr_connectors.pipeline import Converter

    converter = Converter(model=model, mode=mode, device=device, max_new_tokens=max_new_tokens)
    totals = dict(pages=0, chars=0, confirmed=0, corrected=0, truth_chars=0, errors_before=0,
                  errors_after=0, blocks={}, flags={}, agreement=[])
    with tempfile.TemporaryDirectory() as folder:
        for make in layer_samples.ALL_SAMPLES:
            sample = make()
            path = Path(folder) / f"{sample.name}.pdf"
            path.write_bytes(sample.data)
            document = converter.convert(path)
            for page, truth in zip(document.pages, sample.pages):
                check = page.text_check
                if page.raw_output is None or check is None or check.status != "checked":
                    totals["flags"]["not_checked"] = totals["flags"].get("not_checked", 0) + 1
                    continue
                read = parse_page(page.raw_output, number=page.number, prompt=PROMPT,
                                  image_size=(page.image_width, page.image_height))
                totals["pages"] += 1
                totals["chars"] += check.num_chars
                totals["confirmed"] += check.num_confirmed
                totals["corrected"] += check.num_corrected
                totals["agreement"].append(page.text_agreement)
                for status, n in check.num_blocks.items():
                    totals["blocks"][status] = totals["blocks"].get(status, 0) + n
                for flag in page.flags:
                    totals["flags"][flag] = totals["flags"].get(flag, 0) + 1
                truth_text = " ".join(_visible(e.html or e.markdown, e.label in (
                    "title", "sub_title")) for e in truth)
                totals["truth_chars"] += len(truth_text)
                totals["errors_before"] += Levenshtein.distance(_page_text(read), truth_text)
                totals["errors_after"] += Levenshtein.distance(_page_text(page), truth_text)
    chars, truth_chars = max(1, totals["chars"]), max(1, totals["truth_chars"])
    return {**totals, "confirmed_share": round(totals["confirmed"] / chars, 4),
            "corrected_share": round(totals["corrected"] / chars, 4),
            "cer_before": round(totals["errors_before"] / truth_chars, 5),
            "cer_after": round(totals["errors_after"] / truth_chars, 5)}


def _add_page(totals: dict, truth: list, read: Page, checked: Page, injected) -> None:
    check = checked.text_check
    totals["pages"] += 1
    totals["chars"] += check.num_chars
    totals["confirmed"] += check.num_confirmed
    totals["corrected"] += check.num_corrected
    for status, n in check.num_blocks.items():
        totals["blocks"][status] = totals["blocks"].get(status, 0) + n
    truth_text = " ".join(_visible(e.html or e.markdown, e.label == "title" or
                                   e.label == "sub_title") for e in truth)
    totals["truth_chars"] += len(truth_text)
    totals["errors_before"] += Levenshtein.distance(_page_text(read), truth_text)
    totals["errors_after"] += Levenshtein.distance(_page_text(checked), truth_text)
    totals["substitutions"] += len(injected.substitutions)
    totals["repaired"] += sum(1 for index, right, _ in injected.substitutions
                              if right in checked.blocks[index].content)
    if injected.skipped is not None:
        totals["skipped"] += 1
        flags = checked.blocks[injected.skipped[0]].flags
        totals["skip_flagged"] += "text_layer_missing" in flags
    if injected.hallucinated is not None:
        totals["hallucinated"] += 1
        flags = checked.blocks[injected.hallucinated].flags
        totals["hallucination_flagged"] += "text_layer_unmatched" in flags


def _page_text(page: Page) -> str:
    heading = (BlockType.TITLE, BlockType.SECTION_HEADING)
    return " ".join(_visible(b.content, b.type in heading) for b in page.blocks)


def _visible(content: str, is_heading: bool) -> str:
    text = visible_text(content, heading_marks=is_heading).text
    return " ".join(text.replace(CELL, " ").replace(MATH, " ").split())


def _table_rows_kept(sample, pages: list[Page]) -> str:
    """Truth table rows found as rows of a table on the page: "found/all"."""
    found = total = 0
    for elements, page in zip(sample.pages, pages):
        grids = [[[" ".join(c.split()) for c in row] for row in b.table.grid(fill_spans=False)]
                 for b in page.blocks if b.table is not None]
        for element in elements:
            for row in element.rows or []:
                total += 1
                found += any(row in grid for grid in grids)
    return f"{found}/{total}"


def _ms_per_page(data: bytes, repeats: int) -> float:
    """The text path alone: text layer, tables and layout, per page (best of `repeats`)."""
    import pymupdf

    from loaders.page import LoadedPage
    from loaders.text_layer import document_fonts, extract_text_layer, find_layer_tables

    best = float("inf")
    for _ in range(repeats):
        doc = pymupdf.open(stream=data)
        started = time.perf_counter()
        fonts = document_fonts(doc)
        for page in doc:
            layer = extract_text_layer(page)
            layer.tables = find_layer_tables(page, layer.spans)
            layer.document_fonts = fonts
            page_from_text_layer(LoadedPage(source="x", number=page.number + 1,
                                            width_pt=page.rect.width,
                                            height_pt=page.rect.height, text_layer=layer))
        best = min(best, (time.perf_counter() - started) / doc.page_count)
        doc.close()
    return best * 1000


def _add_pymupdf4llm(rows: list[dict], repeats: int) -> None:
    try:
        import pymupdf
        import pymupdf4llm
    except ImportError:
        return
    pymupdf4llm.use_layout(False)  # its layout model takes 1-2 s a page on a CPU
    for row, make in zip(rows, layer_samples.ALL_SAMPLES):
        sample = make()
        best = float("inf")
        for _ in range(repeats):
            doc = pymupdf.open(stream=sample.data)
            started = time.perf_counter()
            chunks = pymupdf4llm.to_markdown(doc, page_chunks=True, show_progress=False)
            best = min(best, (time.perf_counter() - started) / doc.page_count)
            doc.close()
        words = layer_outputs.layer_words(sample.data)
        row["pymupdf4llm_ms_per_page"] = round(best * 1000, 2)
        row["pymupdf4llm_words_kept"] = round(min(
            layer_outputs.word_recall(w, c["text"]) for w, c in zip(words, chunks)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("text", "reconcile", "all", "model"), default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", help="the model folder (part `model`)")
    parser.add_argument("--mode", default="gundam")
    parser.add_argument("--device")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results: dict = {}
    if args.part in ("text", "all"):
        results["text"] = text_path()
        for row in results["text"]:
            print(json.dumps(row))
    if args.part in ("reconcile", "all"):
        results["reconcile"] = reconciliation(args.seeds)
        print(json.dumps(results["reconcile"], indent=1))
    if args.part == "model":
        if not args.model:
            parser.error("--part model needs --model DIR")
        results["model"] = model_pages(args.model, args.mode, args.device, args.max_new_tokens)
        print(json.dumps(results["model"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
