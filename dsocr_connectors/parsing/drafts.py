"""Grammar tokens -> draft blocks: who owns which label, boxes and content text.

This is the tolerant state machine of the parser. It accepts tags in any order: a ref that
never closes (its label is read from the first line), a det that never closes or holds no
coordinates (whatever follows the coordinates is content), a det without a ref, stray
closing tags, the EOS text. Every TEXT token lands in exactly one draft, in order, so no
content character can be lost here. Typing the drafts is `page.py`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dsocr_connectors.document import Box
from dsocr_connectors.parsing.boxes import parse_boxes
from dsocr_connectors.parsing.grounding import Kind, Token
from dsocr_connectors.parsing.labels import is_known_label

_IDENTIFIER_RE = re.compile(r"[A-Za-z_]+")
MAX_COORDS_CHARS = 200  # a broken coordinate payload longer than this is a loop


@dataclass
class Draft:
    """A block under construction."""

    label: str | None = None  # None: text outside any <|ref|>
    boxes: list[Box] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    parts: list[str] = field(default_factory=list)  # content text, in order
    has_det: bool = False

    @property
    def content(self) -> str:
        text = "".join(self.parts).replace("\r\n", "\n").replace("\r", "\n")
        return text.strip()


def split_unclosed_label(text: str, lines: bool) -> tuple[str, str]:
    """(label, rest) of the text after a `<|ref|>` that was never closed.

    In line mode the label is the first line. Otherwise it is the first line too, unless that
    line starts with a known label followed by something else (`table</td><td>..`,
    `equation\\r`): then the label is that known word and the rest is content.
    """
    first, newline, rest = text.partition("\n")
    if not lines:
        match = _IDENTIFIER_RE.match(first)
        if match and is_known_label(match.group()) and match.end() < len(first):
            return match.group(), first[match.end() :] + newline + rest
    return first, newline + rest


class DraftBuilder:
    """Feeds tokens into drafts. `lines=True` treats ref payloads as recognised lines."""

    def __init__(self, lines: bool = False) -> None:
        self.lines = lines
        self.drafts: list[Draft] = []
        self.page_flags: set[str] = set()
        self.state = "content"  # content | ref | after_ref | det
        self.ref_parts: list[str] = []

    @property
    def current(self) -> Draft:
        if not self.drafts:
            self.drafts.append(Draft())
        return self.drafts[-1]

    def _finish_ref(self, closed: bool) -> bool:
        """Set the label of the current draft; False when an unclosed ref held only a label."""
        text = "".join(self.ref_parts)
        self.ref_parts = []
        draft = self.current
        if closed:
            draft.label = text
            self.state = "after_ref"
            return True
        label, rest = split_unclosed_label(text, self.lines)
        draft.label = label
        draft.flags.add("unclosed_ref")
        if self.lines and rest.strip():
            self.drafts.append(Draft(parts=[rest]))
        elif rest:
            draft.parts.append(rest)
        self.state = "content"
        return bool(rest.strip())

    def _text(self, text: str) -> None:
        if self.state == "ref":
            self.ref_parts.append(text)
            return
        if self.state == "det":
            self.current.flags.add("unclosed_det")
        self.state = "content"
        draft = self.current
        if self.lines and draft.label is not None and text.strip():
            # line grounding has nothing after a det: this text is outside any line
            draft = Draft()
            self.drafts.append(draft)
        draft.parts.append(text)

    def feed(self, token: Token) -> None:
        kind = token.kind
        if kind is Kind.TEXT:
            self._text(token.text)
        elif kind is Kind.REF_OPEN:
            if self.state == "ref":
                self._finish_ref(closed=False)
            self.drafts.append(Draft())
            self.state = "ref"
        elif kind is Kind.REF_CLOSE:
            if self.state == "ref":
                self._finish_ref(closed=True)
            else:
                self.page_flags.add("stray_tag")
        elif kind is Kind.DET_OPEN:
            self._open_det()
        elif kind is Kind.COORDS:
            boxes, flags = parse_boxes(token.text)
            self.current.boxes.extend(boxes)
            self.current.flags.update(flags)
            if len(token.text) > MAX_COORDS_CHARS and flags:
                self.current.flags.add("repetition")  # a counting loop inside the det
        elif kind is Kind.DET_CLOSE:
            if self.state == "det":
                self.state = "content"
            else:
                self.page_flags.add("stray_tag")
        elif kind is Kind.EOS:
            if self.state == "ref":
                self._finish_ref(closed=False)
            self.page_flags.add("eos_text")
            self.state = "content"
        elif kind is Kind.GROUNDING:
            self.page_flags.add("stray_tag")

    def _open_det(self) -> None:
        if self.state == "ref":
            self._finish_ref(closed=False)
        draft = self.current
        fresh = draft.label is not None and not draft.has_det and not draft.content
        if not fresh:
            draft = Draft(label=None)
            draft.flags.add("stray_det")
            self.drafts.append(draft)
        draft.has_det = True
        self.state = "det"

    def finish(self) -> tuple[list[Draft], set[str]]:
        """The drafts, and the page flags (`truncated` when the text stopped inside a tag)."""
        if self.state == "ref":
            if not self._finish_ref(closed=False):
                self.page_flags.add("truncated")
        elif self.state == "det":
            self.page_flags.add("truncated")
            self.current.flags.add("unclosed_det")
        elif self.drafts and "unclosed_det" in self.drafts[-1].flags:
            self.page_flags.add("truncated")
        return self.drafts, self.page_flags
