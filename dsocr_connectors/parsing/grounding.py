"""A scanner of DeepSeek-OCR's grounding grammar: raw text -> a flat list of tokens.

The grammar (see SPEC.md) is `<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`
followed by the block's content. The scanner knows nothing about labels, tables or pages;
it only splits the text into grammar tags, coordinate payloads and everything else, so that
the assembler (`page.py`) can be tolerant of any order in which these arrive.

Definition used everywhere (tests, `missing_characters`): the *tag text* of a raw output is
- the tags `<|ref|>`, `<|/ref|>`, `<|det|>`, `<|/det|>`, `<|grounding|>`,
- the end-of-sentence text `<｜end▁of▁sentence｜>`,
- the coordinate payload after a `<|det|>` (`scan_coords`): optional whitespace, then a
  bracketed run made only of digits, whitespace, commas, dots, minus signs and brackets,
  ending where its brackets balance (or where another character or the end of the text
  comes first). A balanced run that is neither `[[..` nor holds a box of four numbers and
  is followed by other text (`[0, 1] \\times [0, 1]`) is content, not coordinates. A det
  whose run breaks off and which then fills more than `MAX_COORDS_CHARS` characters up
  to the next tag with mostly coordinate characters and a few repeated junk words
  (`[[390, Strikz 0 0 0 … 355`) is one looping payload, up to that tag;
- a coordinate payload whose `<|det|>` is missing: right after `<|/ref|>`, or ending a text
  right before a `<|/det|>` that closes nothing, when it reads as boxes (`[[..`, or a group
  of four numbers, or a run that reaches the `<|/det|>`).
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
_BOX_RE = re.compile(r"\[\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}\s*\]")
_NUMBER_RE = re.compile(r"\d+")
_JUNK_WORD_RE = re.compile(r"[^\d\s,.\-\[\]]+")
MAX_COORDS_CHARS = 200  # a broken payload longer than this, made of coordinates, is a loop
MAX_JUNK_WORDS = 3  # distinct non-coordinate words such a looping payload may hold


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


def _coord_run_end(raw: str, i: int) -> int:
    while i < len(raw) and _is_coord_char(raw[i]):
        i += 1
    return i


def _balanced_end(raw: str, i: int, stop: int) -> int | None:
    depth = 0
    for at in range(i, stop):
        if raw[at] == "[":
            depth += 1
        elif raw[at] == "]":
            depth -= 1
            if depth == 0:
                return at + 1
    return None


def _looping_payload_end(raw: str, i: int) -> int | None:
    """End of a det payload that loops (module docstring) from `i`, or None."""
    tag = raw.find("<|", i)
    stop = len(raw) if tag < 0 else tag
    region = raw[i:stop]
    if len(region) <= MAX_COORDS_CHARS:
        return None
    coords = sum(_is_coord_char(char) for char in region)
    words = set(_JUNK_WORD_RE.findall(region))
    if 2 * coords < len(region) or len(words) > MAX_JUNK_WORDS:
        return None
    end = stop
    while end > i and raw[end - 1].isspace():
        end -= 1
    return end


def scan_coords(raw: str, pos: int, *, strict: bool = False) -> int:
    """End offset of the coordinate payload that starts at `pos` (== pos when there is none).

    The payload is optional whitespace, then `[`, then only coordinate characters (any
    whitespace counts, the model writes no-break spaces too). When that run reaches a
    `<|/det|>` or the end of the text it is all payload (`[-1, 2, 3, 4]]` included);
    otherwise it ends at the `]` that balances the first `[` if it reads as boxes, or is a
    looping payload, or (not `strict`) ends where another character comes. `strict` (a
    payload without its `<|det|>`, which may start on the next line) accepts a run reaching
    `<|/det|>`, or the end of the text with a `[[` or four numbers, or balanced boxes.
    """
    i = pos
    while i < len(raw) and (raw[i] in " \t" or (strict and raw[i] in "\r\n")):
        i += 1
    if i >= len(raw) or raw[i] != "[":
        return pos
    run_end = _coord_run_end(raw, i)
    at_end = run_end == len(raw) and (
        not strict or raw.startswith("[[", i) or len(_NUMBER_RE.findall(raw, i)) >= 4
    )
    if raw.startswith("<|/det|>", run_end) or at_end:
        return run_end
    balanced = _balanced_end(raw, i, run_end)
    if balanced is not None:
        payload = raw[i:balanced]
        if not (payload.startswith("[[") or _BOX_RE.search(payload)):
            return pos
        while True:  # more groups written back to back: `[[..]][[..]]`, `[[..]], [[..]]`
            after = balanced
            while after < run_end and raw[after] in " \t,":
                after += 1
            more = _balanced_end(raw, after, run_end) if after < run_end and raw[after] == "[" else None
            if more is None or not _BOX_RE.search(raw, after, more):
                return balanced
            balanced = more
    if strict:
        return pos
    looping = _looping_payload_end(raw, i)
    if looping is not None:
        return looping
    # A broken or truncated payload: trailing whitespace belongs to the content after it.
    end = run_end
    while end > pos and raw[end - 1].isspace():
        end -= 1
    return end


def trailing_coords_start(text: str) -> int | None:
    """Where a coordinate payload ending `text` begins (`[` of a run of coordinate
    characters holding a box of four numbers), or None."""
    start = len(text)
    while start > 0 and _is_coord_char(text[start - 1]):
        start -= 1
    bracket = text.find("[", start)
    if bracket < 0 or _BOX_RE.search(text, bracket) is None:
        return None
    return bracket


def tokenize(raw: str) -> list[Token]:
    """Split `raw` into grammar tokens; TEXT tokens hold every content character, in order.

    A COORDS token not preceded by DET_OPEN is a payload whose `<|det|>` is missing.
    """
    tokens: list[Token] = []
    pos = 0
    det_open = False
    while pos < len(raw):
        match = _TAG_RE.search(raw, pos)
        stop = match.start() if match else len(raw)
        if stop > pos:
            text = raw[pos:stop]
            coords = None
            if match is not None and match.group() == "<|/det|>" and not det_open:
                coords = trailing_coords_start(text)
            if coords is None:
                tokens.append(Token(Kind.TEXT, text, pos))
            else:
                if coords > 0:
                    tokens.append(Token(Kind.TEXT, text[:coords], pos))
                tokens.append(Token(Kind.COORDS, text[coords:], pos + coords))
        if match is None:
            break
        kind = TAGS[match.group()]
        tokens.append(Token(kind, match.group(), match.start()))
        pos = match.end()
        det_open = kind is Kind.DET_OPEN
        if kind in (Kind.DET_OPEN, Kind.REF_CLOSE):
            end = scan_coords(raw, pos, strict=kind is Kind.REF_CLOSE)
            if end > pos:
                tokens.append(Token(Kind.COORDS, raw[pos:end], pos))
                det_open = True
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
