"""Detection of decoding loops: text, blocks or table rows that repeat until the token limit.

A greedy decoder that falls into a loop writes the same thing (or nearly the same thing,
when a no-repeat n-gram rule perturbs it) until it runs out of tokens. So a loop is always a
*suffix*: of a block's text, of the page's blocks, or of a table's rows. Nothing is removed
here; the functions only say where the loop begins so that the page can be flagged and an
export can cut it.

- `exact_loop_start`: the text ends in one unit repeated at least `MIN_REPEATS` times.
- `near_loop_start`: the text ends in a long stretch where almost every 6-character piece
  already occurred shortly before, digits counting as one (catches perturbed loops such
  as `业是农 业是农民在…` and counting loops `337 0 0 0 … 338 0 0 0`).
- `trailing_run_start`: a list ends in `min_run` or more equal items.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

MIN_REPEATS = 8  # copies of a unit before a repeated suffix counts as a loop
MIN_EXACT_CHARS = 32  # and the repeated suffix must be at least this long
MIN_SINGLE_CHAR_RUN = 100  # a single repeated character ("_____") needs a longer run
MAX_PERIOD = 400
GRAM = 6  # piece length for the near-repeat measure
LOOKBACK = 300  # a piece counts as repeated when seen within this many characters before
WINDOW = 50
MAX_NOVEL_SHARE = 0.3  # at most this share of new pieces per window inside a loop
MIN_NEAR_CHARS = 200
_DIGIT_RE = re.compile(r"\d")


def _periodic_length(text: str, period: int) -> int:
    """Length of the longest suffix of `text` with the given period (at least `period`)."""
    n = len(text)
    lo, hi = period, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[n - mid : n - period] == text[n - mid + period : n]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def exact_loop_start(text: str) -> int | None:
    """Offset where an exactly repeated unit at the end of `text` starts repeating.

    The offset is that of the *second* copy: `text[:offset]` keeps one copy of the unit.
    Returns None when the end of the text is not such a loop.
    """
    body = text.rstrip()
    n = len(body)
    best: tuple[int, int] | None = None  # (covered length, period)
    for period in range(1, min(MAX_PERIOD, n // 2) + 1):
        if body[n - 1] != body[n - 1 - period]:
            continue
        length = _periodic_length(body, period)
        if length // period < MIN_REPEATS:
            continue
        if length < (MIN_SINGLE_CHAR_RUN if period == 1 else MIN_EXACT_CHARS):
            continue
        if best is None or length > best[0]:
            best = (length, period)
    if best is None:
        return None
    length, period = best
    return n - length + period


def near_loop_start(text: str) -> int | None:
    """Offset where a long, nearly repeating stretch at the end of `text` begins, or None."""
    body = _DIGIT_RE.sub("0", text.rstrip())  # counting loops: 337 0 0, 338 0 0, ...
    n = len(body)
    if n < MIN_NEAR_CHARS:
        return None
    seen: dict[str, int] = {}
    novel = [0] * n
    for i in range(n - GRAM + 1):
        piece = body[i : i + GRAM]
        last = seen.get(piece)
        novel[i] = 0 if last is not None and i - last <= LOOKBACK else 1
        seen[piece] = i
    prefix = [0]
    for value in novel:
        prefix.append(prefix[-1] + value)
    limit = WINDOW * MAX_NOVEL_SHARE
    start = n
    for i in range(n - WINDOW, -1, -1):
        if prefix[i + WINDOW] - prefix[i] > limit:
            break
        start = i
    # A window may begin inside the last new text: the loop begins where repeated pieces
    # follow each other without a gap.
    while start < n and any(novel[start : start + GRAM]):
        start += 1
    return start if n - start >= MIN_NEAR_CHARS else None


def loop_start(text: str, *, near: bool = True) -> int | None:
    """The earlier of the exact and (if `near`) near-repeat loop starts, or None."""
    found = [exact_loop_start(text)]
    if near:
        found.append(near_loop_start(text))
    starts = [s for s in found if s is not None]
    return min(starts) if starts else None


def trailing_run_start(items: Sequence[Hashable], min_run: int) -> int | None:
    """Index where a run of at least `min_run` equal items ending the sequence begins."""
    if len(items) < min_run:
        return None
    start = len(items) - 1
    while start > 0 and items[start - 1] == items[-1]:
        start -= 1
    return start if len(items) - start >= min_run else None
