"""Paragraphs -> pieces within a size: at sentence ends, else spaces, else anywhere.

Sentence boundaries come from `sentencex` (a maintained segmenter for ~300 languages).

It knows abbreviations ("e.g.", "Dr.", "z. B."), decimal numbers and CJK sentence marks.
One repair on top: a piece that starts with a number right after a short capitalised
abbreviation ("Tab. " + "2 shows ...", "Abb. " + "3") is joined back, since figure, table
and equation references are everywhere in documents and no segmenter knows them all.
"""

from __future__ import annotations

import re

import sentencex

from splitters.sizing import LengthFunction

_REFERENCE_END = re.compile(r"(?:^|\s)[A-Z][a-z]{0,4}\.\s*$")  # "Tab. ", "Eq. ", "Abb. "
_STARTS_WITH_NUMBER = re.compile(r"^\s*[\dIVX]+\b")


def split_sentences(text: str, language: str = "en") -> list[str]:
    """The sentences of `text`, each with its trailing white space; joined they give `text`.

    Args:
        text: the text.
        language: an ISO 639 code for `sentencex` ("en", "de", "zh", ...); unknown codes
            fall back along sentencex's language chain to English rules.
    """
    pieces: list[str] = []
    for piece in sentencex.segment(language, text):
        if pieces and _REFERENCE_END.search(pieces[-1]) and _STARTS_WITH_NUMBER.match(piece):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    if "".join(pieces) != text:  # the segmenter normalised something: never lose characters
        return _rejoin(text, pieces)
    return pieces


def _rejoin(text: str, pieces: list[str]) -> list[str]:
    """`text` cut where the segmenter's pieces end (after their trailing white space)."""
    cuts: list[int] = []
    position = 0
    for piece in pieces:
        core = piece.strip()
        found = text.find(core, position) if core else -1
        if found < 0:
            continue
        end = found + len(core)
        while end < len(text) and text[end].isspace():
            end += 1
        cuts.append(end)
        position = end
    bounds = [0, *(c for c in cuts if 0 < c < len(text)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _pack(pieces: list[str], joiner: str, limit: int, length: LengthFunction) -> list[str]:
    """Greedily join consecutive pieces while the summed lengths stay within `limit`.

    Summing piece lengths is exact for characters and an over-estimate for tokens (a join
    rarely adds tokens), and keeps packing linear; units are measured again afterwards.
    """
    packed: list[str] = []
    size = 0
    gap = length(joiner)
    for piece in pieces:
        piece_size = length(piece)
        if packed and size + gap + piece_size <= limit:
            packed[-1] = packed[-1] + joiner + piece
            size += gap + piece_size
        else:
            packed.append(piece)
            size = piece_size
    return packed


def _hard_split(text: str, limit: int, length: LengthFunction) -> list[str]:
    """Cut a text with no sentence end or space (CJK, a loop) into pieces within `limit`."""
    pieces = []
    while text:
        size = length(text)
        if size <= limit:
            pieces.append(text)
            break
        cut = max(1, len(text) * limit // size)
        while cut > 1 and length(text[:cut]) > limit:
            cut = max(1, cut * 9 // 10)
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces


def split_paragraph(text: str, limit: int, length: LengthFunction,
                    language: str = "en") -> list[str]:
    """Split `text` into pieces of at most `limit`: at sentence ends, else spaces, else anywhere.

    Only a text longer than `limit` is split; a single character longer than it stays whole.
    Sentences come from `split_sentences(text, language)`.
    """
    if length(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sentence in (s for s in split_sentences(text, language) if s.strip()):
        if length(sentence) <= limit:
            pieces.append(sentence.strip())
            continue
        for word in _pack(sentence.split(), " ", limit, length):
            pieces.extend([word] if length(word) <= limit else _hard_split(word, limit, length))
    return _pack(pieces, " ", limit, length)
