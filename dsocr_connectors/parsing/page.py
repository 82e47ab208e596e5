"""`parse_page`: one raw DeepSeek-OCR output -> a `Page` of typed blocks, never raising.

The steps: scan the grammar (`grounding.py`), pick the output kind (layout blocks, grounded
lines, located phrases, or plain text), build drafts (`drafts.py`), type them
(`labels.py`), move table HTML written after a caption into its table, give each table its
own block and attach payloads (tables, equations, figures: `payloads.py`), find loops
(`repetition.py`, `table_loops.py`), and collect the page flags.
Nothing in the model output is evaluated, and no content character is dropped: the
property is stated and checked in `check.py`.
"""

from __future__ import annotations

import logging
import re

from dsocr_connectors.document import (
    Block,
    BlockType,
    Page,
    PageError,
    Repair,
)
from dsocr_connectors.parsing.drafts import Draft, DraftBuilder
from dsocr_connectors.parsing.grounding import Kind, Token, content_text, tokenize
from dsocr_connectors.parsing.labels import block_type, heading_level, is_known_label
from dsocr_connectors.parsing.payloads import (
    attach_payloads,
    move_caption_tables,
    split_table_blocks,
)
from dsocr_connectors.parsing.plain import classify, plain_contents
from dsocr_connectors.parsing.repetition import Loop, text_loop, trailing_cycle
from dsocr_connectors.parsing.table_loops import mark_table_loops

log = logging.getLogger(__name__)

MIN_REPEATED_BLOCKS = 5  # copies of a cycle of equal blocks ending a page that make a loop
MAX_BLOCK_PERIOD = 4  # the longest cycle of blocks looked for
# block flags that are also raised on the page, under the same name
PAGE_LEVEL_BLOCK_FLAGS = frozenset(
    {
        "box_clamped",
        "box_inverted",
        "box_empty",
        "malformed_box",
        "unbalanced_box",
        "unclosed_ref",
        "unclosed_det",
        "missing_det",
        "stray_det",
        "missing_det_open",
        "det_without_coords",
        "missing_ref_open",
        "unknown_label",
        "text_outside_block",
        "malformed_table",
        "repetition",
    }
)
_GRAMMAR_KINDS = (Kind.REF_OPEN, Kind.REF_CLOSE, Kind.DET_OPEN, Kind.DET_CLOSE)


def detect_mode(tokens: list[Token], prompt: str | None) -> str:
    """`plain`, `lines`, `locate` or `layout`: how the output is to be read.

    No grounding tags: plain. Otherwise the prompt decides for `OCR this image` (lines) and
    `Locate` (locate); any other prompt, or none, gives layout when at least half of the
    refs start with a known label, else lines.
    """
    if not any(t.kind in _GRAMMAR_KINDS for t in tokens):
        return "plain"
    asked = (prompt or "").lower()
    if "locate" in asked:
        return "locate"
    if "ocr this image" in asked:
        return "lines"
    refs = [
        tokens[i + 1].text
        for i, t in enumerate(tokens[:-1])
        if t.kind is Kind.REF_OPEN and tokens[i + 1].kind is Kind.TEXT
    ]
    known = sum(
        is_known_label(ref.split("\n")[0]) or is_known_label(re.split(r"[^A-Za-z_]", ref)[0])
        for ref in refs
    )
    return "layout" if not refs or 2 * known >= len(refs) else "lines"


def _block_from_draft(draft: Draft, mode: str) -> Block | None:
    flags = set(draft.flags)
    content = draft.content
    if draft.label is None:
        if not content:
            return None  # whitespace between blocks
        flags.add("text_outside_block")
        kind, label = classify(content), ""
    elif mode == "lines":
        kind, label = BlockType.LINE, ""
        content = draft.label.strip()
    elif mode == "locate":
        kind, label = BlockType.UNKNOWN, draft.label
    else:
        label = draft.label
        kind = block_type(label)
        if kind is BlockType.UNKNOWN:
            flags.add("unknown_label")
        if not draft.has_det:
            flags.add("missing_det")
    return Block(
        index=0,
        type=kind,
        label=label,
        boxes=draft.boxes,
        content=content,
        heading_level=heading_level(kind, content),
        flags=sorted(flags),
        repairs=list(draft.repairs),
    )


def _add_flags(block: Block, *flags: str) -> None:
    block.flags = sorted({*block.flags, *flags})


def mark_text_loop(block: Block, loop: Loop | None = None) -> None:
    """Record the loop ending the block's text (found here unless given): a flag, a repair."""
    loop = loop or text_loop(block.content)
    if loop is None:
        return
    _add_flags(block, "repetition", f"loop_start:{loop.offset}")
    block.repairs.append(
        Repair(
            kind="loop_cut",
            offset=loop.offset,
            length=loop.end - loop.offset,
            unit=loop.unit,
            copies=round(loop.copies, 2),
            text=loop.closing(block.content) or None,
        )
    )


def mark_loops(blocks: list[Block], truncated: bool) -> None:
    """Flag loops in block texts, in table rows and cells, and in cycles of equal blocks."""
    for block in blocks:
        if block.table is not None:
            mark_table_loops(block)
        else:
            mark_text_loop(block)
    candidates = blocks
    if truncated and blocks and not blocks[-1].content:
        candidates = blocks[:-1]  # the partial copy the token limit cut off
    signatures = [(b.type, b.label, b.content) for b in candidates]
    cycle = trailing_cycle(signatures, MIN_REPEATED_BLOCKS, MAX_BLOCK_PERIOD)
    if cycle is None:
        return
    run = blocks[cycle.start - cycle.period :]
    same_boxes = all(
        b.boxes == run[i % cycle.period].boxes for i, b in enumerate(run) if i >= cycle.period
    )
    if truncated or same_boxes or any("repetition" in b.flags for b in run):
        for block in blocks[cycle.start :]:
            _add_flags(block, "repeated_block", "repetition")
        kept = blocks[cycle.start - 1]
        kept.repairs.append(
            Repair(
                kind="blocks_cut",
                length=len(blocks) - cycle.start,
                copies=round((len(blocks) - cycle.start) / cycle.period, 2),
                unit="\n\n".join(b.content for b in blocks[cycle.start - cycle.period : cycle.start]),
            )
        )


def ends_open(block: Block) -> bool:
    """Whether a block stops inside a table, a cell or a display formula (token limit)."""
    if block.table is not None and {"unclosed_table", "unclosed_cell"} & set(block.table.flags):
        return True
    return block.content.count("\\[") > block.content.count("\\]")


def _page_flags(blocks: list[Block], flags: set[str]) -> list[str]:
    result = set(flags)
    for block in blocks:
        result.update(PAGE_LEVEL_BLOCK_FLAGS.intersection(block.flags))
    if blocks and "eos_text" not in flags and ends_open(blocks[-1]):
        result.add("truncated")
    return sorted(result)


def _parse(raw: str, prompt: str | None) -> tuple[list[Block], set[str]]:
    tokens = tokenize(raw)
    mode = detect_mode(tokens, prompt)
    if mode == "plain":
        text = "".join(t.text for t in tokens if t.kind is Kind.TEXT)
        flags = {"eos_text"} if any(t.kind is Kind.EOS for t in tokens) else set()
        blocks = []
        for content, loop in plain_contents(text):
            blocks.append(Block(index=0, type=classify(content), label="", content=content))
            mark_text_loop(blocks[-1], loop)
        for block in blocks:
            block.heading_level = (
                heading_level(BlockType.SECTION_HEADING, block.content)
                if block.type is BlockType.SECTION_HEADING
                else None
            )
        blocks = split_table_blocks(blocks)
        attach_payloads(blocks)
        mark_loops([b for b in blocks if b.table is not None], truncated=False)
        return blocks, flags
    builder = DraftBuilder(lines=mode in ("lines", "locate"))
    for token in tokens:
        builder.feed(token)
    drafts, flags = builder.finish()
    blocks = []
    for draft in drafts:
        block = _block_from_draft(draft, mode)
        if block is not None:
            blocks.append(block)
        else:  # whitespace only, but what went wrong in its tags still counts
            flags.update(PAGE_LEVEL_BLOCK_FLAGS.intersection(draft.flags))
    if mode == "layout":
        blocks = move_caption_tables(blocks)
    blocks = split_table_blocks(blocks)
    attach_payloads(blocks)
    mark_loops(blocks, truncated="truncated" in flags)
    return blocks, flags


def parse_page(
    raw: str,
    *,
    number: int = 1,
    image_size: tuple[int, int] | None = None,
    prompt: str | None = None,
) -> Page:
    """Parse one raw model output into a `Page`; never raises on any string.

    Args:
        raw: the text the model generated for one page (EOS text may or may not be there).
        number: the 1-based page number to give the page.
        image_size: (width, height) in pixels of the image the model saw, when known.
        prompt: the prompt used; it decides how tagged output is read (`OCR this image` ->
            line blocks, `Locate` -> boxes of the phrase) and is stored on the page.

    Returns:
        A `Page` with `blocks` in reading order, `flags` (docs/parser.md lists them),
        `raw_output`, `prompt` and the image size. `status` is left `ok`: deciding whether
        a flagged page needs a rerun is the pipeline's job. If the parser itself fails (a
        bug), the page gets one text block with all content characters, the flag
        `parse_error` and a `PageError` naming the page.
    """
    width, height = image_size if image_size else (None, None)
    page = Page(
        number=number,
        image_width=width,
        image_height=height,
        prompt=prompt,
        raw_output=raw,
    )
    try:
        blocks, flags = _parse(raw, prompt)
    except Exception as exc:  # the promise is: never raise, never lose text
        log.exception("parser failed on page %d", number)
        page.errors.append(
            PageError(stage="parse", message=f"page {number}: {exc}", type=type(exc).__name__)
        )
        text = content_text(raw).strip()
        blocks = [Block(index=0, type=BlockType.TEXT, label="", content=text)] if text else []
        flags = {"parse_error"}
    for index, block in enumerate(blocks):
        block.index = index
    if not blocks:
        flags.add("empty_output")
    page.blocks = blocks
    page.flags = _page_flags(blocks, flags)
    return page
