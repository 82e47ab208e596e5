"""A model-read page checked against its PDF text layer, block by block.

Each text-layer word goes to the block whose box holds its centre (the model's 0..999
boxes scaled to the displayed page in points; the loader gives words in the same frame,
/Rotate applied and crop box origin, so the render DPI plays no part). A box widened by
`MARGIN` word heights catches words a tight box cuts, and by `REACH` the words its block
has (a box a line short); where boxes compete, a box that holds the centre without widening
wins, then the block that has the word, then the smallest (`_assign`). A block's words are read in
rows (lines overlapping vertically), left to right, box after box, and compared with its
text (`compare.py`); the block gets its `TextCheck`, the page its `PageTextCheck` and a
`text_agreement`: confirmed characters over the characters compared, counting layer text
outside every box (the model may have skipped it) as disagreement.

Equations (LaTeX) and figures are not compared; their words are theirs, so a chart's
labels do not count as skipped text. A text layer that is not usable (mostly U+FFFD,
invisible OCR text under a scan, ...) is not used at all: the page says why.
"""

from __future__ import annotations

import re
import time

import numpy as np

from dsocr_connectors.document import (
    Block,
    BlockType,
    Page,
    PageStatus,
    PageTextCheck,
    TextCheck,
)
from dsocr_connectors.reconcile.compare import FLAG_CHARS, Comparison, compare
from loaders.page import LayerWord, LoadedPage, TextLayer

MARGIN = 0.5  # word heights around each box
REACH = 1.5  # word heights around each box, for words its block has
TEXT_LAYER_ENGINE = "text-layer"
NOT_COMPARED = {
    BlockType.EQUATION: "equation: LaTeX is not compared with the text layer",
    BlockType.FIGURE: "figure: its text is not compared with the text layer",
}

Points = tuple[float, float, float, float]
_UNREADABLE = re.compile("[\ufffd\ue000-\uf8ff]")
_BULLETS = {"\u2022", "\u25e6", "\u25aa", "\u25cf", "\u2023", "\u2043", "\u25a0", "-", "*",
            "\u2013", "\u00b7"}


def check_with_text_layer(page: Page, loaded: LoadedPage) -> Page:
    """`reconcile_page` for a page a model read well, when its source had a text layer,
    in place (the pipeline's page; a copy of a dense page costs more than its check).

    Pages read from the text layer, failed pages and pages of images come back as they are.
    """
    if (page.engine in (None, TEXT_LAYER_ENGINE) or loaded.text_layer is None
            or page.status not in (PageStatus.OK, PageStatus.RECOVERED)):
        return page
    return reconcile_page(page, loaded.text_layer, in_place=True)


def reconcile_page(page: Page, layer: TextLayer, *, in_place: bool = False) -> Page:
    """A copy of a model-read `page` whose blocks were checked against `layer`.

    Args:
        page: the page as the model read it; needs `width_pt`/`height_pt` (a PDF page).
        layer: the page's text layer (words in points on the displayed page).
        in_place: check and change `page` itself instead of a copy.

    Returns:
        The page with `text_check` on it and its compared blocks, `text_agreement`, the
        layer's characters written where they fix the model's, and flags on contradicted
        blocks ("text_layer_unmatched", "text_layer_missing", "text_layer_disagrees").
    """
    started = time.perf_counter()
    if not in_place:
        page = page.model_copy(deep=True)
    reason = _not_checked_reason(page, layer)
    if reason is not None:
        page.text_check = PageTextCheck(status="not_checked", reason=reason)
        return page
    words = _compared_words(layer.words)
    assigned, outside = _assign(words, page)
    total = PageTextCheck(status="checked")
    compared = 0
    for index, block in enumerate(page.blocks):
        block_words = assigned.get(index, [])
        check = _check_block(block, block_words)
        if check is None:
            continue
        block.text_check = check
        total.num_blocks[check.status] = total.num_blocks.get(check.status, 0) + 1
        total.num_chars += check.num_chars
        total.num_confirmed += check.num_confirmed
        total.num_corrected += check.num_corrected
        total.num_unmatched += check.num_unmatched
        total.num_missing += check.num_missing
        if check.status != "model_only":
            compared += max(check.num_chars, check.num_layer)
    total.num_outside = sum(len(w.text) for w in outside)
    total.outside_text = _lines_text(outside)
    page.text_check = total
    denominator = compared + total.num_outside
    page.text_agreement = round(total.num_confirmed / denominator, 4) if denominator else None
    if total.num_outside >= FLAG_CHARS:
        page.flags = sorted({*page.flags, "text_layer_outside_blocks"})
    if total.num_blocks.get("contradicted"):
        page.flags = sorted({*page.flags, "text_layer_contradicted"})
    page.timings["reconcile"] = time.perf_counter() - started
    return page


def _not_checked_reason(page: Page, layer: TextLayer) -> str | None:
    if not page.width_pt or not page.height_pt:
        return "page size in points unknown"
    if not layer.is_usable:
        return f"text layer not usable: {layer.unusable_reason or 'too little clean text'}"
    if not layer.words:
        return "the text layer has no words"
    if not any(block.boxes for block in page.blocks):
        return "no block boxes to place the text layer's words in (a prompt without grounding)"
    return None


def _check_block(block: Block, words: list[LayerWord]) -> TextCheck | None:
    if block.type in NOT_COMPARED:
        return TextCheck(status="model_only", reason=NOT_COMPARED[block.type],
                         words=_word_boxes(words))
    if not block.content.strip() and not words:
        return None
    if not words:
        reason = "no box" if not block.boxes else "no text-layer words in the box"
        return TextCheck(status="model_only", reason=reason)
    result = compare(block.content, " ".join(w.text for w in words),
                     is_html=block.table is not None or "<table" in block.content,
                     is_heading=block.type in (BlockType.TITLE, BlockType.SECTION_HEADING))
    if result.content != block.content:
        _rewrite(block, result.content)
    status = result.status
    check = TextCheck(
        status=status, num_chars=result.num_chars, num_layer=result.num_layer,
        num_confirmed=result.num_confirmed,
        num_corrected=result.num_corrected, num_unmatched=result.num_unmatched,
        num_missing=result.num_missing, agreement=round(result.agreement, 4),
        unmatched_text=result.unmatched_text, missing_text=result.missing_text,
        corrections=result.corrections, reason=_reason(result),
        words=_word_boxes(words) if status in ("confirmed", "corrected") else [],
    )
    flags = set(block.flags)
    if result.unmatched_text:
        flags.add("text_layer_unmatched")
    if result.missing_text:
        flags.add("text_layer_missing")
    if status == "contradicted" and not (result.unmatched_text or result.missing_text):
        flags.add("text_layer_disagrees")
    block.flags = sorted(flags)
    return check


def _word_boxes(words: list[LayerWord]) -> list[dict]:
    """The words as `WordBox` data (validated together with their `TextCheck`: quicker
    than one model at a time on a dense page)."""
    return [{"text": w.text, "bbox": (round(w.bbox[0], 2), round(w.bbox[1], 2),
                                      round(w.bbox[2], 2), round(w.bbox[3], 2))}
            for w in words]


def _reason(result: Comparison) -> str | None:
    parts = []
    if result.unmatched_text:
        parts.append("the model wrote text the layer does not have here")
    if result.missing_text:
        parts.append("the layer has text the model left out")
    if result.status == "contradicted" and not parts:
        parts.append(f"model and layer agree on {result.agreement:.0%} of the text only")
    if result.num_unfixable:
        parts.append(f"{result.num_unfixable} differing characters kept as the model wrote "
                     "them (markup inside, or too little agreement to correct)")
    return "; ".join(parts) or None


def _rewrite(block: Block, content: str) -> None:
    """New content; a table's cells are read again from its corrected HTML."""
    block.content = content
    if block.table is not None:
        from dsocr_connectors.parsing.tables import parse_table

        at = content.find("<table")
        block.table = parse_table(content[at:] if at >= 0 else content)


def _assign(words: list[LayerWord], page: Page) -> tuple[dict[int, list[LayerWord]],
                                                         list[LayerWord]]:
    """Words -> the block (index) whose box holds them, read in order; and the rest.

    A box holds a word whose centre lies in it widened by `MARGIN` word heights; a word in
    no such box may still go to a box within `REACH` word heights whose block has that word
    (a box drawn a line short). Among the boxes that hold a word, one that holds it without
    widening wins (a word the model misread is still its own block's), then one whose block
    has the word, then the smallest. Then each text line goes to one box
    (`_keep_lines_together`).
    """
    width, height = page.width_pt, page.height_pt
    owners: list[tuple[int, int]] = []
    rects: list[Points] = []
    for index, block in enumerate(page.blocks):
        for number, box in enumerate(block.boxes):
            if box.x2 > box.x1 and box.y2 > box.y1:
                owners.append((index, number))
                rects.append(box.to_points(width, height))
    if not rects or not words:
        return {}, list(words)
    boxes = np.array(rects)  # (M, 4)
    corners = np.array([w.bbox for w in words], dtype=np.float64).reshape(-1, 4)
    cx = (corners[:, :1] + corners[:, 2:3]) / 2
    cy = (corners[:, 1:2] + corners[:, 3:]) / 2
    size = np.maximum(corners[:, 3:] - corners[:, 1:2], 1.0)
    away = np.maximum.reduce([boxes[:, 0] - cx, cx - boxes[:, 2], boxes[:, 1] - cy,
                              cy - boxes[:, 3], np.zeros((len(words), len(rects)))])
    distance = away / size  # (N, M), in word heights; 0 inside a box
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    near = distance <= REACH
    has_word = _has_word(words, page.blocks)[:, [index for index, _ in owners]]  # (N, M)
    holds = near & ((distance <= MARGIN) | has_word)
    # the best box by (widened, block lacks the word, area), the first of equals: one number
    count = len(rects)
    by_area = np.empty(count, dtype=np.int64)
    by_area[np.lexsort((np.arange(count), area))] = np.arange(count)
    rank = (distance > 0) * (2 * count) + ~has_word * count + by_area
    best = np.where(holds, rank, 4 * count).argmin(axis=1)
    chosen: list[int | None] = [int(m) if held else None
                                for m, held in zip(best, holds.any(axis=1))]
    _keep_lines_together(words, chosen, near)
    placed: dict[tuple[int, int], list[LayerWord]] = {}
    outside = []
    for word, m in zip(words, chosen):
        if m is None:
            outside.append(word)
        else:
            placed.setdefault(owners[m], []).append(word)
    assigned: dict[int, list[LayerWord]] = {}
    for index, number in sorted(placed):
        assigned.setdefault(index, []).extend(_in_rows(placed[index, number]))
    return assigned, outside


def _keep_lines_together(words: list[LayerWord], chosen: list[int | None],
                         near: np.ndarray) -> None:
    """A text line goes to one box: the box most of its characters went to takes the
    line's other words too, where it is near them (a box edge cut through the line)."""
    lines: dict[tuple[int, int], list[int]] = {}
    for k, word in enumerate(words):
        lines.setdefault((word.block, word.line), []).append(k)
    for members in lines.values():
        weights: dict[int, int] = {}
        for k in members:
            if chosen[k] is not None:
                weights[chosen[k]] = weights.get(chosen[k], 0) + len(words[k].text)
        if len(weights) < 2 and all(chosen[k] is not None for k in members):
            continue
        if not weights:
            continue
        main = max(weights, key=lambda m: weights[m])
        for k in members:
            if chosen[k] != main and near[k, main]:
                chosen[k] = main


def _has_word(words: list[LayerWord], blocks: list[Block]) -> np.ndarray:
    """(words, blocks): whether the block's text has the word (`_token`s compared)."""
    holders: dict[str, list[int]] = {}
    for index, block in enumerate(blocks):
        for token in _tokens(block):
            holders.setdefault(token, []).append(index)
    rows, columns = [], []
    for k, word in enumerate(words):
        for index in holders.get(_token(word.text), ()):
            rows.append(k)
            columns.append(index)
    has = np.zeros((len(words), len(blocks)), dtype=bool)
    has[rows, columns] = True
    return has


def _tokens(block: Block) -> set[str]:
    if block.type in NOT_COMPARED:
        return set()
    return {_token(w) for w in block.content.split()}


def _token(text: str) -> str:
    return text.strip(".,;:!?()[]{}\"'*#|<>").casefold()


def _in_rows(words: list[LayerWord]) -> list[LayerWord]:
    """Words in reading order: mupdf's lines, grouped into rows by vertical overlap, rows
    top to bottom, lines left to right."""
    lines: dict[tuple[int, int], list[LayerWord]] = {}
    for word in words:
        lines.setdefault((word.block, word.line), []).append(word)
    boxes = {key: (min(w.bbox[0] for w in ws), min(w.bbox[1] for w in ws),
                   max(w.bbox[3] for w in ws)) for key, ws in lines.items()}
    rows: list[list[tuple[int, int]]] = []
    band = (0.0, 0.0)
    for key in sorted(lines, key=lambda k: (boxes[k][1] + boxes[k][2]) / 2):
        _, y0, y1 = boxes[key]
        overlap = min(y1, band[1]) - max(y0, band[0])
        if rows and overlap >= 0.5 * min(y1 - y0, band[1] - band[0]):
            rows[-1].append(key)
            band = (min(band[0], y0), max(band[1], y1))
        else:
            rows.append([key])
            band = (y0, y1)
    return [w for row in rows for key in sorted(row, key=lambda k: boxes[k][0])
            for w in lines[key]]


def _lines_text(words: list[LayerWord]) -> list[str]:
    lines: dict[tuple[int, int], list[str]] = {}
    for word in _in_rows(words):
        lines.setdefault((word.block, word.line), []).append(word.text)
    return [" ".join(texts) for texts in lines.values()]


def _compared_words(words: list[LayerWord]) -> list[LayerWord]:
    """The words to compare: not a bullet starting a line (Markdown writes its own), nor
    a word with U+FFFD or private-use characters (those say nothing about the text)."""
    out = []
    seen_lines: set[tuple[int, int]] = set()
    for word in words:
        line = (word.block, word.line)
        starts_line = line not in seen_lines
        seen_lines.add(line)
        if starts_line and word.text in _BULLETS:
            continue
        if not _UNREADABLE.search(word.text):
            out.append(word)
    return out

