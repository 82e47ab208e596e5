"""Output names: one per source, never a name already taken (`dsocr convert`, `parse-raw`)."""

from __future__ import annotations

from collections.abc import Callable


def unique_stem(stem: str, is_taken: Callable[[str], bool]) -> str:
    """`stem`, else `stem-2`, `stem-3`, ...: the first name `is_taken` says is free.

    Args:
        stem: the wanted name (a source file's stem).
        is_taken: whether a name is in use (by another source, a file already there...);
            callers compare case-insensitively, so `A` and `a` never share a folder on
            filesystems that do not tell them apart.
    """
    candidate, n = stem, 1
    while is_taken(candidate):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate
