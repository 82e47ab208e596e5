"""A safe reader for the Python-literal dicts some prompts make the model emit.

`Parse the figure.` on geometry figures yields text like
`{'Line': {'line': ['(0, 0) -- (3, 4)'], 'line_type': ['--'], 'line_endpoint': ['A: (0, 0)']}}`.
The released scripts feed that to `ast.literal_eval`/`eval`. This reads the same subset of
literals (dicts, lists, tuples, strings, numbers, True/False/None) with a small recursive-descent
parser that never executes anything and fails with a `LiteralError` that says where.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_WORDS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


class LiteralError(ValueError):
    """The text is not a literal this reader accepts; `position` is where it stopped."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at position {position}")
        self.position = position


def parse_literal(text: str) -> Any:
    """Parse one literal (Python or JSON spelling) from `text`; trailing text is an error."""
    reader = _Reader(text)
    value = reader.value()
    reader.skip_space()
    if reader.pos != len(text):
        raise LiteralError("unexpected trailing text", reader.pos)
    return value


def find_literal(text: str) -> Any | None:
    """The first `{...}` literal in `text` that parses, or None (for outputs with chatter)."""
    for match in re.finditer(r"\{", text):
        reader = _Reader(text, match.start())
        try:
            return reader.value()
        except LiteralError:
            continue
    return None


class _Reader:
    def __init__(self, text: str, pos: int = 0):
        self.text = text
        self.pos = pos

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise LiteralError(f"expected {char!r}", self.pos)
        self.pos += 1

    def value(self) -> Any:
        char = self.peek()
        if char == "{":
            return self.container("{", "}", is_dict=True)
        if char == "[":
            return self.container("[", "]")
        if char == "(":
            return tuple(self.container("(", ")"))
        if char in "'\"":
            return self.string(char)
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            number = match.group()
            is_float = any(c in number for c in ".eE")
            return float(number) if is_float else int(number)
        for word, meaning in _WORDS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return meaning
        raise LiteralError("expected a value", self.pos)

    def container(self, open_: str, close: str, is_dict: bool = False) -> Any:
        self.expect(open_)
        items: Any = {} if is_dict else []
        while self.peek() != close:
            if not self.peek():
                raise LiteralError(f"unclosed {open_!r}", self.pos)
            if is_dict:
                key = self.value()
                if isinstance(key, (dict, list)):
                    raise LiteralError("unhashable key", self.pos)
                self.expect(":")
                items[key] = self.value()
            else:
                items.append(self.value())
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != close:
                raise LiteralError(f"expected ',' or {close!r}", self.pos)
        self.pos += 1
        return items

    def string(self, quote: str) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
                out.append(_ESCAPES.get(self.text[self.pos], "\\" + self.text[self.pos]))
            else:
                out.append(char)
            self.pos += 1
        raise LiteralError("unclosed string", self.pos)
