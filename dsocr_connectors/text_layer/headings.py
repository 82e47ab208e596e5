"""Heading levels from a document's font styles, the same on every page.

The body size is the size that carries the most characters. A heading style is a style
(size, bold) of short standalone lines that is at least `HEADING_SIZE_RATIO` x the body
size, or bold at the body size. Heading styles are ranked by size, then bold first: the
first is level 1 when it is at least `TITLE_SIZE_RATIO` x the body size (a title), else
the ranks start at level 2; levels stop at `MAX_HEADING_LEVEL`. The styles come from a
sample of the document's pages (`TextLayer.document_fonts`), so a page without a title
does not promote its section headings to level 1; a style the sample missed is ranked
among the known ones by its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loaders.page import FontStats

HEADING_SIZE_RATIO = 1.15
TITLE_SIZE_RATIO = 1.3
MAX_HEADING_LEVEL = 4
MAX_HEADING_SHARE = 0.4  # a style carrying this share of all text is body text, not headings

Style = tuple[float, bool]


@dataclass
class HeadingStyles:
    body_size: float
    ranked: list[Style] = field(default_factory=list)  # heading styles, largest first
    first_level: int = 2
    body_styles: set[Style] = field(default_factory=set)  # heading-like, but carry the text

    def level(self, size: float, is_bold: bool) -> int | None:
        """The heading level of text set in this style, None when it is not a heading style."""
        style = (round(size * 2) / 2, is_bold)
        if style in self.body_styles or not self.is_heading_style(style):
            return None
        above = sum(1 for known in self.ranked if _rank_key(known) < _rank_key(style))
        return min(self.first_level + above, MAX_HEADING_LEVEL)

    def is_heading_style(self, style: Style) -> bool:
        size, is_bold = style
        if self.body_size <= 0:
            return is_bold
        return size >= self.body_size * HEADING_SIZE_RATIO or (
            is_bold and size >= self.body_size - 0.5
        )


def heading_styles(fonts: FontStats) -> HeadingStyles:
    """The ranked heading styles of a document (or page) from its font statistics."""
    by_size: dict[float, int] = {}
    for (size, _), n in fonts.chars.items():
        by_size[size] = by_size.get(size, 0) + n
    body = max(by_size, key=lambda s: (by_size[s], -s)) if by_size else 0.0
    styles = HeadingStyles(body_size=body)
    total = sum(fonts.chars.values()) or 1
    styles.body_styles = {
        style for style, n in fonts.chars.items()
        if styles.is_heading_style(style) and n >= MAX_HEADING_SHARE * total
    }
    candidates = [s for s in fonts.short_lines
                  if styles.is_heading_style(s) and s not in styles.body_styles]
    styles.ranked = sorted(candidates, key=_rank_key)
    if styles.ranked and body > 0 and styles.ranked[0][0] >= TITLE_SIZE_RATIO * body:
        styles.first_level = 1
    return styles


def _rank_key(style: Style) -> tuple[float, bool]:
    size, is_bold = style
    return -size, not is_bold
