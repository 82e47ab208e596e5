"""A progress bar in pages and pages/s (tqdm), silent when not on a terminal or when quiet."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any


class Progress:
    """Counts finished pages; shows a tqdm bar on stderr when `enabled` and stderr is a TTY.

    Args:
        enabled: False (quiet) never draws; None draws when stderr is a terminal.
        description: the label before the bar.
    """

    def __init__(self, enabled: bool | None = None, description: str = "pages") -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.num_pages = 0
        self.by_status: Counter[str] = Counter()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(desc=description, unit="page", file=sys.stderr, dynamic_ncols=True)

    def add_total(self, num_pages: int) -> None:
        """Pages now known to be coming (the total grows as documents are opened)."""
        if self._bar is not None and num_pages > 0:
            self._bar.total = (self._bar.total or 0) + num_pages
            self._bar.refresh()

    def update(self, status: str) -> None:
        """One more page finished with `status`; the bar shows the counts by status."""
        self.num_pages += 1
        self.by_status[status] += 1
        if self._bar is not None:
            self._bar.set_postfix(dict(sorted(self.by_status.items())), refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
