"""One block's text against the text layer's words in its box: align, correct, count.

The block's visible text (`markup.visible_text`) and the layer's words (joined by spaces)
are aligned character by character (Levenshtein, rapidfuzz), after folding typographic
variants that OCR does not see (curly quotes, dashes, no-break space). The differences
come in regions, neighbours closer than `MIN_ANCHOR` equal characters merged. A region is:
- neutral: whitespace or cell boundaries only, or a formula (never compared);
- a fix: at most `MAX_FIX_CHARS` characters on each side (an OCR confusion: "m" for "rn",
  "1" for "l", "u" for "ü"), or one or two characters missing or extra inside a word. The
  layer's exact characters are written in place of the model's, when the text both sides
  have aligns well (`MIN_AGREEMENT_TO_FIX` of the shorter side confirmed; a skipped or
  added stretch does not stop the fixes elsewhere) and the region holds no markup;
- else unmatched (model text the layer does not have there) and/or missing (layer text the
  model does not have), except words found on both sides (text read in another order:
  confirmed). From `FLAG_CHARS` characters on, the text is listed and the block is
  contradicted: the model may have hallucinated or skipped it. The model's text stays.
A character that is equal only after folding is written as the layer has it and counted as
corrected. Nothing here knows about boxes or pages.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

from dsocr_connectors.reconcile.markup import CELL, MATH, NOT_EDITABLE, Visible, visible_text

MAX_FIX_CHARS = 4
MAX_WORD_FIX_CHARS = 2
MIN_ANCHOR = 2
FLAG_CHARS = 12
MIN_AGREEMENT_TO_FIX = 0.6
MIN_AGREEMENT = 0.5  # below this the block is contradicted as a whole

_FOLD = str.maketrans({
    "\u2019": "'", "\u2018": "'", "\u201a": ",", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u00a0": " ", CELL: " ",
})
_MARKS = (" ", CELL, MATH)


@dataclass
class Comparison:
    """The outcome for one block: its content with the fixes written in, and the counts."""

    content: str
    num_chars: int = 0
    num_layer: int = 0  # layer characters compared (formulas' stretches left out)
    num_confirmed: int = 0
    num_corrected: int = 0
    num_unmatched: int = 0
    num_missing: int = 0
    num_unfixable: int = 0  # small differences left as the model wrote them (markup inside)
    corrections: list[tuple[str, str]] = field(default_factory=list)  # (model's, layer's) words
    unmatched_text: list[str] = field(default_factory=list)
    missing_text: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.num_confirmed / max(1, self.num_chars, self.num_layer)

    @property
    def status(self) -> str:
        if self.unmatched_text or self.missing_text or self.agreement < MIN_AGREEMENT:
            return "contradicted"
        if self.num_unmatched or self.num_missing:
            return "differs"
        return "corrected" if self.num_corrected else "confirmed"


@dataclass
class _Region:
    v0: int
    v1: int
    l0: int
    l1: int
    kind: str = ""  # neutral, fix or difference


def compare(content: str, layer_text: str, *, is_html: bool = False,
            is_heading: bool = False) -> Comparison:
    """Compare a block's content with the layer text in its box; fixes written in.

    Args:
        content: the block's content as the model wrote it (Markdown, HTML, LaTeX).
        layer_text: the text-layer words in the block's box, in reading order, joined by
            single spaces.
        is_html: the content is HTML (a table): written characters are escaped.
        is_heading: a heading block: `#` marks at its start are Markdown, not text.
    """
    visible = visible_text(content, heading_marks=is_heading)
    model, layer = visible.text, layer_text
    result = Comparison(content=content, num_chars=_count(model), num_layer=_count(layer))
    regions = _regions(model.translate(_FOLD), layer.translate(_FOLD))
    edits: list[tuple[int, int, str]] = []  # (model start, model end, layer text)
    differences: list[tuple[str, str]] = []  # (model text, layer text)
    covered = 0
    for region in regions:
        _equal_stretch(model, layer, covered, region.v0, region.l0 - (region.v0 - covered),
                       result, edits)
        covered = region.v1
        ours, theirs = model[region.v0:region.v1], layer[region.l0:region.l1]
        if region.kind == "difference":
            differences.append((ours, theirs))
        elif MATH in ours:
            result.num_layer -= _count(theirs)  # what the formula stands for: not compared
    _equal_stretch(model, layer, covered, len(model), len(layer) - (len(model) - covered),
                   result, edits)
    _count_differences(differences, result)
    fixes = [r for r in regions if r.kind == "fix"]
    # how well the text both sides have aligns (a skipped or added stretch aside)
    overlap = result.num_confirmed / max(1, min(result.num_chars, result.num_layer))
    if overlap >= MIN_AGREEMENT_TO_FIX:
        edits += [(f.v0, f.v1, layer[f.l0:f.l1]) for f in fixes]
        result.content = _apply(content, visible, edits, result, is_html)
    else:
        result.num_unfixable += sum(max(f.v1 - f.v0, f.l1 - f.l0) for f in fixes)
    return result


def _regions(model: str, layer: str) -> list[_Region]:
    """The differing stretches, each with its kind; differences grown to whole words."""
    regions: list[_Region] = []
    for op in Levenshtein.opcodes(model, layer):
        if op.tag == "equal":
            continue
        last = regions[-1] if regions else None
        if last is not None and op.src_start - last.v1 < MIN_ANCHOR and (
            op.dest_start - last.l1 < MIN_ANCHOR
        ):
            last.v1, last.l1 = op.src_end, op.dest_end
        else:
            regions.append(_Region(op.src_start, op.src_end, op.dest_start, op.dest_end))
    for region in regions:
        region.kind = _kind(model, layer, region)
    for k, region in enumerate(regions):
        if region.kind == "difference":
            before = regions[k - 1] if k else _Region(0, 0, 0, 0)
            after = regions[k + 1] if k + 1 < len(regions) else _Region(
                len(model), len(model), len(layer), len(layer))
            _grow_to_words(region, model, layer, before, after)
    return regions


def _kind(model: str, layer: str, region: _Region) -> str:
    ours, theirs = model[region.v0:region.v1], layer[region.l0:region.l1]
    num_ours, num_theirs = _count(ours), _count(theirs)
    if MATH in ours or (num_ours == 0 and num_theirs == 0):
        return "neutral"
    if num_ours == 0 or num_theirs == 0:
        inside_word = (region.v0 > 0 and region.v1 < len(model)
                       and model[region.v0 - 1] not in _MARKS and model[region.v1] not in _MARKS)
        is_fix = inside_word and max(num_ours, num_theirs) <= MAX_WORD_FIX_CHARS
    else:
        is_fix = max(len(ours.strip()), len(theirs.strip())) <= MAX_FIX_CHARS
    return "fix" if is_fix else "difference"


def _grow_to_words(region: _Region, model: str, layer: str, before: _Region,
                   after: _Region) -> None:
    """Widen a region over the equal characters that finish its first and last words,
    up to the regions beside it (a fix next to a difference stays a fix)."""
    while (region.v0 > before.v1 and region.l0 > before.l1
           and model[region.v0 - 1] not in _MARKS and not layer[region.l0 - 1].isspace()):
        region.v0, region.l0 = region.v0 - 1, region.l0 - 1
    while (region.v1 < after.v0 and region.l1 < after.l0
           and model[region.v1] not in _MARKS and not layer[region.l1].isspace()):
        region.v1, region.l1 = region.v1 + 1, region.l1 + 1


def _equal_stretch(model: str, layer: str, v0: int, v1: int, l0: int, result: Comparison,
                   edits: list[tuple[int, int, str]]) -> None:
    """Count an aligned stretch; characters equal only after folding become edits."""
    for k in range(v0, v1):
        char, other = model[k], layer[l0 + k - v0]
        if char in _MARKS:
            continue
        if char == other:
            result.num_confirmed += 1
        else:
            edits.append((k, k + 1, other))


def _count_differences(differences: list[tuple[str, str]], result: Comparison) -> None:
    """Count the regions that are not fixes. Words the model wrote in one place and the
    layer has in another (a cell read in another order, a line moved) are the same text
    moved: confirmed. The rest is unmatched or missing, listed from `FLAG_CHARS` on."""
    ours = Counter(w for o, _ in differences for w in _words(o))
    theirs = Counter(w for _, t in differences for w in _words(t))
    moved = ours & theirs
    result.num_confirmed += sum(len(w) * n for w, n in moved.items())
    left_ours, left_theirs = moved.copy(), moved.copy()
    for o, t in differences:
        kept_ours = _without(_words(o), left_ours)
        kept_theirs = _without(_words(t), left_theirs)
        result.num_unmatched += sum(map(len, kept_ours))
        result.num_missing += sum(map(len, kept_theirs))
        if sum(map(len, kept_ours)) >= FLAG_CHARS:
            result.unmatched_text.append(" ".join(kept_ours))
        if sum(map(len, kept_theirs)) >= FLAG_CHARS:
            result.missing_text.append(" ".join(kept_theirs))


def _words(text: str) -> list[str]:
    return text.replace(CELL, " ").split()


def _without(words: list[str], moved: Counter[str]) -> list[str]:
    kept = []
    for word in words:
        if moved[word] > 0:
            moved[word] -= 1
        else:
            kept.append(word)
    return kept


def _apply(content: str, visible: Visible, edits: list[tuple[int, int, str]],
           result: Comparison, is_html: bool) -> str:
    """Write the edits into the content, last first; an edit over markup is not made.
    Each corrected word is recorded as (the model's, the layer's)."""
    sources, model = visible.sources, visible.text
    words: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for v0, v1, text in sorted(edits, reverse=True):
        span = _content_span(sources, v0, v1)
        if span is None:
            result.num_unfixable += max(v1 - v0, len(text))
            continue
        start, end = span
        written = html.escape(text, quote=False) if is_html else text
        content = content[:start] + written + content[end:]
        result.num_corrected += _count(text) or 1  # a space written or taken out counts one
        words.setdefault(_word_around(model, v0, v1), []).append((v0, v1, text))
    for (w0, w1), word_edits in sorted(words.items()):
        fixed = model[w0:w1]
        for v0, v1, text in word_edits:  # last first: earlier offsets stay valid
            fixed = fixed[:v0 - w0] + text + fixed[v1 - w0:]
        result.corrections.append((model[w0:w1], fixed))
    return content


def _word_around(text: str, v0: int, v1: int) -> tuple[int, int]:
    while v0 > 0 and text[v0 - 1] not in _MARKS:
        v0 -= 1
    while v1 < len(text) and text[v1] not in _MARKS:
        v1 += 1
    return v0, v1


def _content_span(sources: list[tuple[int, int]], v0: int, v1: int) -> tuple[int, int] | None:
    """Where model characters [v0, v1) sit in the content, if they sit together in text."""
    if v1 > v0:
        inside = sources[v0:v1]
        if NOT_EDITABLE in inside or any(a[1] != b[0] for a, b in zip(inside, inside[1:])):
            return None
        return inside[0][0], inside[-1][1]
    if v0 == 0 or v0 >= len(sources):
        return None
    before, after = sources[v0 - 1], sources[v0]
    if NOT_EDITABLE in (before, after) or before[1] != after[0]:
        return None
    return before[1], before[1]


def _count(text: str) -> int:
    """The characters that are not whitespace nor marks (CELL and MATH are whitespace to
    `str.isspace` and `str.split` too)."""
    return sum(map(len, text.split()))


