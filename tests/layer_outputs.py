"""Model outputs simulated from the truth of `layer_samples`, and measures of Markdown.

`model_output(sample, page)` writes a page's truth in the model's grounding grammar, with
OCR errors injected the way a vision model makes them, for measuring the reconciliation
with the text layer where no model runs. `layer_words`, `word_recall` and `in_order` measure
a page's Markdown against the PDF's own words and the truth's reading order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import pymupdf

from tests.pdf_writer import Element, Sample

MODEL_LABELS = {"list": "text", "code": "text", "header": "text", "footer": "text",
                "page_number": "text"}
HALLUCINATION = "This sentence is not printed anywhere on the page."


@dataclass
class Injected:
    """What `model_output` changed: word substitutions (truth, wrong), a skipped stretch of
    words and a hallucinated sentence, each with the index of its element."""

    substitutions: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: tuple[int, str] | None = None
    hallucinated: int | None = None


def model_output(sample: Sample, number: int, *, seed: int = 0, errors: bool = True,
                 skip: bool = True, hallucinate: bool = True,
                 jitter: int = 3) -> tuple[str, Injected]:
    """Page `number` (1-based) of `sample` in the model's grounding grammar.

    With `errors`, OCR errors are injected the way a vision model makes them: "rn" read as
    "m", "l" as "1", "cl" as "d", "0" as "O", accents dropped (about one word in twelve);
    with `skip` one stretch of eight words is left out of the longest paragraph, with
    `hallucinate` a sentence that is not on the page is added to the second longest.
    Boxes move by up to `jitter` grid steps.
    """
    rng = random.Random(seed * 1000 + number)
    width, height = sample.size
    injected = Injected()
    elements = sample.pages[number - 1]
    prose = sorted((i for i, e in enumerate(elements) if e.label == "text" and e.rows is None),
                   key=lambda i: -len(elements[i].words))
    out = []
    for index, element in enumerate(elements):
        x0, y0, x1, y1 = element.box
        box = [round(x0 / width * 999), round(y0 / height * 999), round(x1 / width * 999),
               round(y1 / height * 999)]
        box = [min(999, max(0, v + rng.randint(-jitter, jitter))) for v in box]
        content = element.html if element.rows is not None else element.markdown
        if errors:
            content = _corrupt(content, index, rng, injected)
            if skip and prose and index == prose[0] and len(element.words) > 24:
                words = content.split(" ")
                start = len(words) // 2
                injected.skipped = (index, " ".join(words[start:start + 8]))
                content = " ".join(words[:start] + words[start + 8:])
            if hallucinate and len(prose) > 1 and index == prose[1]:
                content = f"{content} {HALLUCINATION}"
                injected.hallucinated = index
        label = MODEL_LABELS.get(element.label, element.label)
        out.append(f"<|ref|>{label}<|/ref|><|det|>[[{', '.join(map(str, box))}]]<|/det|>\n"
                   f"{content}\n")
    return "\n".join(out), injected


_CONFUSIONS = [("rn", "m"), ("cl", "d"), ("l", "1"), ("0", "O"), ("é", "e"), ("ü", "u"),
               ("ö", "o"), ("fi", "f"), ("m", "rn")]


def _corrupt(content: str, index: int, rng: random.Random, injected: Injected) -> str:
    pieces = re.split(r"(<[^>]+>|\s+)", content)
    for k, piece in enumerate(pieces):
        if not piece or piece.startswith("<") or piece.isspace() or rng.random() > 1 / 12:
            continue
        for wrong_from, wrong_to in _CONFUSIONS:
            if wrong_from in piece and piece.strip("#-*") == piece:
                at = piece.index(wrong_from)
                pieces[k] = piece[:at] + wrong_to + piece[at + len(wrong_from):]
                injected.substitutions.append((index, piece, pieces[k]))
                break
    return "".join(pieces)


BULLETS = {"\u2022", "\u25e6", "\u25aa", "\u25cf", "-", "*", "\u2013"}


def layer_words(data: bytes) -> list[list[str]]:
    """Each page's text-layer words as pymupdf splits them (ligatures expanded, as the
    loader reads them), without list bullets (Markdown writes its own)."""
    doc = pymupdf.open(stream=data)
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
    pages = [[w[4] for w in page.get_text("words", flags=flags) if w[4] not in BULLETS]
             for page in doc]
    doc.close()
    return pages


def markdown_words(markdown: str) -> list[str]:
    """The words a reader sees in Markdown: tags, entities, heading and list marks, pipe
    table rules, emphasis marks, fences and escapes left out (code inside a fence is taken
    as it is)."""
    import html

    words: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            line = html.unescape(re.sub(r"<[^>]+>", " ", line))
            line = re.sub(r"^\s*(#{1,6}|[-*+])(\s|$)", " ", line)
            line = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~])", r"\1", line)
            line = re.sub(r"(^|\s)[*_]+|[*_]+(\s|$)", " ", line.replace("|", " "))
        words.extend(line.split())
    return words


def word_recall(words: list[str], markdown: str) -> float:
    """The share of `words` found as words in `markdown` (as many times as they occur)."""
    from collections import Counter

    have, need = Counter(markdown_words(markdown)), Counter(words)
    return sum(min(n, have[w]) for w, n in need.items()) / max(1, sum(need.values()))


def in_order(elements: list[Element], markdown: str) -> float:
    """The share of elements (by their first words) found after the element before them."""
    flat = " ".join(markdown_words(markdown))
    found = ordered = position = 0
    for element in elements:
        key = " ".join(element.words[:4])
        at = flat.find(key, position)
        if at >= 0:
            found, ordered, position = found + 1, ordered + 1, at
        elif key in flat:
            found += 1
    return ordered / max(1, found)
