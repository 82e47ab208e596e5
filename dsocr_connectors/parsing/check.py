"""The "no content character lost" property, as a function both tests and callers can use.

Definition (see also `grounding.py`): the *content characters* of a raw output are the
characters left after removing the tag text (tags, EOS text, coordinate payloads), the
label of every closed `<|ref|>LABEL<|/ref|>` whose LABEL is a known layout label (those are
grammar words, kept in `Block.label`) and whitespace. Every content character must appear,
in order, in the page text: the concatenation of `label + content` of its blocks in page
order.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import Page
from dsocr_connectors.parsing.grounding import Kind, tokenize
from dsocr_connectors.parsing.labels import is_known_label

_INVISIBLE_RE = re.compile(r"\s+")


def visible(text: str) -> str:
    """`text` without whitespace: what the property compares."""
    return _INVISIBLE_RE.sub("", text)


def content_characters(raw: str) -> str:
    """The content characters of a raw model output (definition in the module docstring)."""
    tokens = tokenize(raw)
    kept = []
    for i, token in enumerate(tokens):
        if token.kind is not Kind.TEXT:
            continue
        is_label = (
            0 < i < len(tokens) - 1
            and tokens[i - 1].kind is Kind.REF_OPEN
            and tokens[i + 1].kind is Kind.REF_CLOSE
            and is_known_label(token.text)
        )
        if not is_label:
            kept.append(token.text)
    return visible("".join(kept))


def page_text(page: Page) -> str:
    """The visible text of a parsed page: `label + content` of each block, in order."""
    return visible("".join(block.label + block.content for block in page.blocks))


def missing_characters(raw: str, page: Page) -> str:
    """Content characters of `raw` not found, in order, in `page`; "" when none is lost.

    Greedy subsequence matching: each content character is looked for after the previous
    match; the characters that cannot be matched are returned (empty string: nothing lost).
    """
    expected = content_characters(raw)
    text = page_text(page)
    missing = []
    pos = 0
    for char in expected:
        found = text.find(char, pos)
        if found < 0:
            missing.append(char)
        else:
            pos = found + 1
    return "".join(missing)
