"""A scanner of DeepSeek-OCR's grounding grammar: raw text -> a flat list of tokens.

The grammar (see SPEC.md) is `<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`
followed by the block's content. The scanner knows nothing about labels, tables or pages;
it only splits the text into grammar tags, coordinate payloads and everything else, so that
the assembler (`page.py`) can be tolerant of any order in which these arrive.

Definition used everywhere (tests, `missing_characters`): the *tag text* of a raw output is
- the tags `<|ref|>`, `<|/ref|>`, `<|det|>`, `<|/det|>`, `<|grounding|>`,
- the end-of-sentence text `<｜end▁of▁sentence｜>`,
- the coordinate payload after a `<|det|>`: optional whitespace, then a bracketed run made
  only of digits, whitespace, commas, dots, minus signs and brackets, ending where its
  brackets balance (or where another character or the end of the text comes first).
Every other character is *content*: the scanner returns it in TEXT tokens, in order.
Nothing is ever evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

EOS_TEXT = "<｜end▁of▁sentence｜>"
PAGE_SPLIT = "<--- Page Split --->"


class Kind(str, Enum):
    REF_OPEN = "ref_open"
    REF_CLOSE = "ref_close"
    DET_OPEN = "det_open"
    DET_CLOSE = "det_close"
    GROUNDING = "grounding"
    EOS = "eos"
    COORDS = "coords"  # the payload right after <|det|>; may be partial or empty
    TEXT = "text"


TAGS = {
    "<|ref|>": Kind.REF_OPEN,
    "<|/ref|>": Kind.REF_CLOSE,
    "<|det|>": Kind.DET_OPEN,
    "<|/det|>": Kind.DET_CLOSE,
    "<|grounding|>": Kind.GROUNDING,
    EOS_TEXT: Kind.EOS,
}
_TAG_RE = re.compile("|".join(re.escape(tag) for tag in TAGS))
_COORD_CHARS = frozenset("0123456789,.-[]")


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int  # offset in the raw text

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def _is_coord_char(char: str) -> bool:
    return char in _COORD_CHARS or char.isspace()


def scan_coords(raw: str, pos: int) -> int:
    """End offset of the coordinate payload that starts at `pos` (== pos when there is none).

    The payload is optional whitespace, then `[`, then only coordinate characters (any
    whitespace counts, the model writes no-break spaces too). When that run reaches a
    `<|/det|>` it is all payload (`[-1, 2, 3, 4]]` included); otherwise the payload ends at
    the `]` that balances the first `[`, or where another character or the text ends.
    """
    i = pos
    while i < len(raw) and raw[i] in " \t":
        i += 1
    if i >= len(raw) or raw[i] != "[":
        return pos
    run_end = i
    while run_end < len(raw) and _is_coord_char(raw[run_end]):
        run_end += 1
    if raw.startswith("<|/det|>", run_end):
        return run_end
    depth = 0
    while i < run_end:
        if raw[i] == "[":
            depth += 1
        elif raw[i] == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    # A broken or truncated payload: trailing whitespace belongs to the content after it.
    while i > pos and raw[i - 1].isspace():
        i -= 1
    return i


def tokenize(raw: str) -> list[Token]:
    """Split `raw` into grammar tokens; TEXT tokens hold every content character, in order."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(raw):
        match = _TAG_RE.search(raw, pos)
        stop = match.start() if match else len(raw)
        if stop > pos:
            tokens.append(Token(Kind.TEXT, raw[pos:stop], pos))
        if match is None:
            break
        kind = TAGS[match.group()]
        tokens.append(Token(kind, match.group(), match.start()))
        pos = match.end()
        if kind is Kind.DET_OPEN:
            end = scan_coords(raw, pos)
            if end > pos:
                tokens.append(Token(Kind.COORDS, raw[pos:end], pos))
            pos = end
    return tokens


def content_text(raw: str) -> str:
    """The raw text with all tag text removed (the definition in the module docstring)."""
    return "".join(t.text for t in tokenize(raw) if t.kind is Kind.TEXT)


def split_pages(raw: str) -> list[str]:
    """Split a multi-page raw output joined by the released `<--- Page Split --->` line.

    The released PDF script writes the separator after every page, so one trailing empty
    piece is dropped; empty pieces elsewhere are kept (each is a page that produced nothing).
    """
    pieces = raw.split(PAGE_SPLIT)
    if len(pieces) > 1 and not pieces[-1].strip():
        pieces.pop()
    return [piece.strip("\n") for piece in pieces]
