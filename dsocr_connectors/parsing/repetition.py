"""Detection of decoding loops: text, blocks, table rows or cells that repeat to the end.

A greedy decoder that falls into a loop writes the same thing until it runs out of tokens
(or, perturbed by a no-repeat n-gram rule, nearly the same thing), so a loop is always a
*suffix*: of a block's text, of the page's blocks, of a table's rows or of a row's cells.
Nothing is removed here; the functions say where a cut may begin so that the page can
record it and the exports can leave the copies out.

The rule, for every kind of unit: only what is repeated is cut. A cut keeps one full copy
of the repeated unit and needs enough copies to be certain. Digits are content: `4 [3,2,0]`
and `5 [3,1,1]` are different items, never copies of each other.

- `exact_loop`: the text ends in one unit repeated exactly, at least `MIN_REPEATS` times.
- `near_loop`: the text ends in a long stretch in which no `GRAM`-character piece is new
  (each occurred, digits and all, at most `LOOKBACK` characters before), covering at least
  `MIN_NEAR_COPIES` times the longest distance back to such an earlier occurrence. This is
  the loop a no-repeat n-gram rule perturbs (`业是农 业是农民在…`, `河南省作协主席、…副主席、`).
- Both cut where one unit ends, preferring the point where the fewest math delimiters,
  braces and HTML tags are open, then a space or a separator (`delimiters.py`).
- `trailing_cycle`: a list (blocks, rows, cells) ends in a cycle of 1..`max_period` items
  repeated at least `min_copies` times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from dsocr_connectors.parsing.delimiters import closers, depth_profile

MIN_REPEATS = 8  # copies of a unit before an exactly repeated suffix counts as a loop
MIN_EXACT_CHARS = 32  # and the repeated suffix must be at least this long
MIN_SINGLE_CHAR_RUN = 100  # a single repeated character ("_____") needs a longer run
MAX_PERIOD = 400  # the longest unit looked for, in characters
GRAM = 6  # piece length for the near-repeat measure
LOOKBACK = 400  # a piece is not new when it occurred at most this many characters before
MIN_NEAR_CHARS = 200  # a near loop cuts at least this many characters
MIN_NEAR_COPIES = 4  # and covers at least this many times its longest recurrence distance
SEPARATORS = frozenset(",.;:!?)]}>、，。；：！？）】》」』…")


@dataclass(frozen=True)
class Loop:
    """A loop at the end of a text: `text[:offset]` holds one copy of `unit`, and
    `text[offset:end]` is `copies` more copies of it (the last one may be partial)."""

    offset: int
    end: int
    unit: str
    copies: float
    exact: bool

    def closing(self, text: str) -> str:
        """What closes the delimiters left open by cutting `text` at `offset`."""
        return closers(text[: self.offset])


@dataclass(frozen=True)
class Cycle:
    """A list ending in `copies` repetitions of `items[start - period : start]`:
    `start` is where the second copy begins (the items from there on are the copies)."""

    start: int
    period: int
    copies: int


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


def _is_boundary(text: str, at: int) -> bool:
    if at <= 0 or at >= len(text):
        return True
    before, after = text[at - 1], text[at]
    return before.isspace() or after.isspace() or before in SEPARATORS


def best_cut(text: str, lo: int, hi: int) -> int:
    """The cut point in `[lo, hi]`: fewest open delimiters, then a boundary, then earliest."""
    hi = min(hi, len(text))
    if lo >= hi:
        return min(lo, len(text))
    profile = depth_profile(text[: hi + 1])
    return min(range(lo, hi + 1), key=lambda at: (profile[at], not _is_boundary(text, at), at))


def exact_loop(text: str) -> Loop | None:
    """The exactly repeated unit ending `text` (whitespace after it ignored), or None."""
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
    first = n - length  # where the first copy begins; any rotation of the unit repeats
    cut = best_cut(body, first + period, first + 2 * period - 1)
    return Loop(cut, n, body[cut - period : cut], (n - cut) / period, exact=True)


def near_loop(text: str) -> Loop | None:
    """A long stretch ending `text` in which nothing is new (module docstring), or None."""
    body = text.rstrip()
    n = len(body)
    if n < MIN_NEAR_CHARS + GRAM:
        return None
    last_seen: dict[str, int] = {}
    last_new = -1  # start of the last piece that was new
    distances = []  # for the pieces after last_new: how far back each occurred
    for i in range(n - GRAM + 1):
        piece = body[i : i + GRAM]
        seen = last_seen.get(piece)
        last_seen[piece] = i
        if seen is None or i - seen > LOOKBACK:
            last_new = i
            distances.clear()
        else:
            distances.append(i - seen)
    safe = last_new + GRAM  # every piece from here on occurred before, within text[:safe]
    if n - safe < MIN_NEAR_CHARS or not distances:
        return None
    longest = max(distances)
    if (n - safe) < MIN_NEAR_COPIES * longest:
        return None
    cut = best_cut(body, safe, safe + longest)
    unit_length = Counter(distances).most_common(1)[0][0]
    unit = body[max(0, cut - unit_length) : cut]
    return Loop(cut, n, unit, (n - cut) / unit_length, exact=False)


def text_loop(text: str, *, near: bool = True) -> Loop | None:
    """The loop ending `text` that cuts the most (exact, or near if `near`), or None."""
    found = [loop for loop in (exact_loop(text), near_loop(text) if near else None) if loop]
    return min(found, key=lambda loop: loop.offset) if found else None


def exact_loop_start(text: str) -> int | None:
    """Where the cut of an exact loop ending `text` begins (one copy before it), or None."""
    loop = exact_loop(text)
    return loop.offset if loop else None


def near_loop_start(text: str) -> int | None:
    """Where the cut of a near loop ending `text` begins, or None."""
    loop = near_loop(text)
    return loop.offset if loop else None


def loop_start(text: str, *, near: bool = True) -> int | None:
    """Where the cut of the loop ending `text` begins (`text_loop`), or None."""
    loop = text_loop(text, near=near)
    return loop.offset if loop else None


def trailing_cycle(items: Sequence[Hashable], min_copies: int, max_period: int = 1) -> Cycle | None:
    """The cycle of 1..`max_period` equal items that ends `items`, repeated at least
    `min_copies` times (the shortest such period that covers the most items), or None."""
    n = len(items)
    best: Cycle | None = None
    for period in range(1, min(max_period, n // 2) + 1):
        start = n  # becomes the earliest index from which items[i] == items[i - period]
        while start - 1 - period >= 0 and items[start - 1] == items[start - 1 - period]:
            start -= 1
        covered = n - (start - period)
        copies = covered // period
        if copies < min_copies:
            continue
        if best is None or start < best.start:
            best = Cycle(start=start, period=period, copies=copies)
    return best


def trailing_run_start(items: Sequence[Hashable], min_run: int) -> int | None:
    """Index where a run of at least `min_run` equal items ending the sequence begins."""
    cycle = trailing_cycle(items, min_run, 1)
    return None if cycle is None else cycle.start - 1
