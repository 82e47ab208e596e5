"""Grammar tokens -> draft blocks: who owns which label, boxes and content text.

This is the tolerant state machine of the parser. It accepts tags in any order: a ref that
never closes (its label is read from the first line), a det that never closes (whatever
follows the coordinates is content), a det without a ref, coordinates whose `<|det|>` is
missing (read as the box), a known label just before a `<|/ref|>` whose `<|ref|>` is
missing (it starts a block with that label), a `<|det|>` without coordinates in a block
that already has content (a stray tag: the text goes on), stray closing tags, the EOS
text. Every TEXT token lands in exactly one draft, in order, so no content character can
be lost here (a label taken from text moves to the new draft's label). Typing the drafts
is `page.py`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dsocr_connectors.document import Box, Repair
from dsocr_connectors.parsing.boxes import parse_boxes
from dsocr_connectors.parsing.grounding import MAX_COORDS_CHARS, Kind, Token
from dsocr_connectors.parsing.labels import is_known_label

_IDENTIFIER_RE = re.compile(r"[A-Za-z_]+")
_TRAILING_LABEL_RE = re.compile(r"(?:^|\n)[ \t]*([A-Za-z_]+)[ \t]*$")


@dataclass
class Draft:
    """A block under construction."""

    label: str | None = None  # None: text outside any <|ref|>
    boxes: list[Box] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    parts: list[str] = field(default_factory=list)  # content text, in order
    has_det: bool = False
    repairs: list[Repair] = field(default_factory=list)

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
        # content | ref | after_ref | det | det_pending (the next token tells) | det_text
        # (a det holding text, not coordinates) | det_implicit (coordinates without <|det|>)
        self.state = "content"
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
        if self.state == "det_pending":
            self._det_without_coords()
        if self.state == "det_text" and not self.lines:
            self.current.parts.append(text)
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
        if self.state == "det_pending" and kind is not Kind.COORDS and kind is not Kind.TEXT:
            self._det_without_coords()
        if self.state == "det_text" and kind is not Kind.TEXT:
            if kind is not Kind.DET_CLOSE:
                self.current.flags.add("unclosed_det")
            self.state = "det" if kind is Kind.DET_CLOSE else "content"
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
            elif self.lines or not self._label_from_text():
                self.page_flags.add("stray_tag")
        elif kind is Kind.DET_OPEN:
            if self.state == "ref":
                self._finish_ref(closed=False)
            self.state = "det_pending"  # a det or a stray tag: the next token tells
        elif kind is Kind.COORDS:
            self._coords(token.text)
        elif kind is Kind.DET_CLOSE:
            if self.state in ("det", "det_implicit"):
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

    def _owns_det(self) -> Draft:
        """The draft a det belongs to: the current one when it is a fresh labelled block,
        else a new unlabelled draft (flag `stray_det`)."""
        draft = self.current
        fresh = draft.label is not None and not draft.has_det and not draft.content
        if not fresh:
            draft = Draft(label=None)
            draft.flags.add("stray_det")
            self.drafts.append(draft)
        draft.has_det = True
        return draft

    def _coords(self, payload: str) -> None:
        if self.state == "det_pending":
            draft = self._owns_det()
            self.state = "det"
        else:  # the payload's <|det|> is missing (grounding.tokenize)
            draft = self._owns_det()
            draft.flags.add("missing_det_open")
            draft.repairs.append(Repair(kind="coordinates_from_text", text=payload))
            self.state = "det_implicit"
        boxes, flags = parse_boxes(payload)
        draft.boxes.extend(boxes)
        draft.flags.update(flags)
        if len(payload) > MAX_COORDS_CHARS and {"malformed_box", "unbalanced_box"} & set(flags):
            draft.flags.add("repetition")  # a counting loop inside the det
            draft.repairs.append(Repair(kind="coordinates_loop", length=len(payload)))

    def _det_without_coords(self) -> None:
        """A `<|det|>` followed by no coordinates: the det of a fresh block (what it holds is
        the block's content), else a stray tag inside content, which goes on."""
        draft = self.current
        if draft.label is not None and not draft.has_det and not draft.content:
            draft.has_det = True
            draft.flags.add("det_without_coords")
            self.state = "det_text"
        else:
            self.page_flags.add("stray_tag")
            self.state = "content"

    def _label_from_text(self) -> bool:
        """A stray `<|/ref|>` right after a known label on its own line: that label starts a
        new block (its `<|ref|>` is missing). Returns whether it did."""
        draft = self.current
        text = "".join(draft.parts)
        match = _TRAILING_LABEL_RE.search(text)
        if match is None or not is_known_label(match.group(1)):
            return False
        draft.parts = [text[: match.start(1)]]
        label = match.group(1)
        self.drafts.append(
            Draft(
                label=label,
                flags={"missing_ref_open"},
                repairs=[Repair(kind="label_from_text", text=label)],
            )
        )
        self.state = "after_ref"
        return True

    def finish(self) -> tuple[list[Draft], set[str]]:
        """The drafts, and the page flags (`truncated` when the text stopped inside a tag)."""
        if self.state == "ref":
            if not self._finish_ref(closed=False):
                self.page_flags.add("truncated")
        elif self.state in ("det", "det_pending", "det_text"):
            if self.state == "det_pending":
                self._det_without_coords()
            self.page_flags.add("truncated")
            self.current.flags.add("unclosed_det")
        elif self.drafts and "unclosed_det" in self.drafts[-1].flags:
            self.page_flags.add("truncated")
        return self.drafts, self.page_flags
