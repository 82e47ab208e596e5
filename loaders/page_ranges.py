"""Page selections: "1-3,7", "5-", 4, range(1, 4), [1, 2] -> 1-based page numbers.

Numbers past the end are kept, not dropped: the loaders turn each into an error page
saying the document is shorter, so a mistyped range never vanishes silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

PageSelection = Union[None, int, str, Iterable[Union[int, str, range]]]


def select_pages(pages: PageSelection, total: int) -> list[int]:
    """The 1-based page numbers `pages` selects in a document of `total` pages, in order.

    Args:
        pages: None (all pages), an int, a string of comma-separated numbers and ranges
            ("1-3,7", "5-" for 5 to the end, "-2" for 1 to 2), a `range` of page numbers,
            or an iterable of any of these.
        total: the document's page count.

    Returns:
        Page numbers in the order given, duplicates removed; numbers above `total` are
        kept (the caller reports them).

    Raises:
        ValueError: a malformed range or a page number below 1.
    """
    if pages is None:
        return list(range(1, total + 1))
    numbers: list[int] = []
    for item in _items(pages):
        if isinstance(item, range):
            numbers.extend(item)
        elif isinstance(item, int):
            numbers.append(item)
        else:
            numbers.extend(_parse(item, total))
    for number in numbers:
        if number < 1:
            raise ValueError(f"page numbers start at 1, got {number} in {pages!r}")
    return list(dict.fromkeys(numbers))


def _items(pages: PageSelection) -> Iterable[int | str | range]:
    if isinstance(pages, (int, str, range)):
        return [pages]
    return pages  # type: ignore[return-value]


def _parse(text: str, total: int) -> list[int]:
    numbers: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                first, _, last = part.partition("-")
                start = int(first) if first else 1
                stop = int(last) if last else total
                if stop < start:
                    raise ValueError
                numbers.extend(range(start, stop + 1))
            else:
                numbers.append(int(part))
        except ValueError:
            raise ValueError(f"bad page range {part!r} in {text!r} (use e.g. '1-3,7')") from None
    return numbers
