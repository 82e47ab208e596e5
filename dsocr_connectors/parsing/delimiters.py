"""Which math delimiters, braces and HTML tags are open at each point of a text.

A loop cut must not leave `\\(0.8 = \\frac{4}{5} = \\frac{1` behind: the exports close what
the cut leaves open, and the loop rule prefers cut points where few things are open. This
module only scans; it never changes text.

What is tracked: `\\(..\\)`, `\\[..\\]` (but not the line break `\\\\[2pt]`), `$$..$$`, `$..$`
(a `$` opens math only when a non-space, non-digit follows, so prices stay text), braces
(`\\{` and `\\}` are literal and skipped), and the paired HTML tags the model writes (`<sup>`,
`<center>`, `<td>`, ...; void tags such as `<br>` are ignored). A closer that matches
nothing open is ignored, as a browser or TeX would report and skip it.
"""

from __future__ import annotations

import re

PAIRED_TAGS = frozenset(
    "b i u s em strong sub sup small big mark code pre span div p center font a del ins "
    "table thead tbody tfoot tr td th caption ul ol li h1 h2 h3 h4 h5 h6 blockquote".split()
)
_TOKEN_RE = re.compile(
    r"\\\\|\\[{}]|\\\(|\\\)|\\\[|\\\]|\$\$|\$|[{}]|<(/?)([A-Za-z][A-Za-z0-9]*)\b[^<>]*?(/?)>"
)
INSIDE_TOKEN = 1000  # added to the depth of a position inside a delimiter or tag
CLOSERS = {"\\(": "\\)", "\\[": "\\]", "$$": "$$", "$": "$", "{": "}"}


def _close(stack: list[str], opener: str) -> None:
    """Pop up to and including `opener` if it is open; otherwise ignore the closer."""
    if opener in stack:
        while stack.pop() != opener:
            pass


def _step(stack: list[str], match: re.Match[str], text: str) -> None:
    token = match.group()
    if token in ("\\\\", "\\{", "\\}"):
        return
    if token in ("\\(", "\\["):
        stack.append(token)
    elif token in ("\\)", "\\]"):
        _close(stack, "\\(" if token == "\\)" else "\\[")
    elif token in ("$$", "$"):
        if stack and stack[-1] == token:
            stack.pop()
        elif token == "$$" or not _is_price(text, match.end()):
            stack.append(token)
    elif token == "{":
        stack.append("{")
    elif token == "}":
        if stack and stack[-1] == "{":
            stack.pop()
    else:  # an HTML tag
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if name not in PAIRED_TAGS or self_closing:
            return
        if closing:
            _close(stack, f"<{name}>")
        else:
            stack.append(f"<{name}>")


def _is_price(text: str, after: int) -> bool:
    """A `$` followed by a digit or a space is a currency sign, not math."""
    return after >= len(text) or text[after].isspace() or text[after].isdigit()


def open_delimiters(text: str) -> list[str]:
    """The delimiters still open at the end of `text`, outermost first (`\\\\(`, `{`, `<sup>`)."""
    stack: list[str] = []
    for match in _TOKEN_RE.finditer(text):
        _step(stack, match, text)
    return stack


def closers(text: str) -> str:
    """The text that closes what is open at the end of `text`, innermost first ("" if none)."""
    return "".join(
        f"</{opener[1:]}" if opener.startswith("<") else CLOSERS[opener]
        for opener in reversed(open_delimiters(text))
    )


def depth_profile(text: str) -> list[int]:
    """`profile[i]`: how many delimiters are open in `text[:i]` (`len(text) + 1` values).

    A position inside a delimiter or tag (between `\\` and `(`, inside `<td ...>`) gets
    `INSIDE_TOKEN` added: cutting there would split the token.
    """
    profile = [0] * (len(text) + 1)
    stack: list[str] = []
    done = 0
    for match in _TOKEN_RE.finditer(text):
        start, end = match.span()
        profile[done : start + 1] = [len(stack)] * (start + 1 - done)
        profile[start + 1 : end] = [len(stack) + INSIDE_TOKEN] * (end - start - 1)
        _step(stack, match, text)
        done = end
    profile[done:] = [len(stack)] * (len(text) + 1 - done)
    return profile
