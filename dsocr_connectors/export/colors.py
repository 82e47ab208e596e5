"""One colour per block type, shared by the HTML export and the layout previews."""

from __future__ import annotations

from dsocr_connectors.document import BlockType

TYPE_COLORS: dict[BlockType, str] = {
    BlockType.TITLE: "#d62728",
    BlockType.SECTION_HEADING: "#ff7f0e",
    BlockType.TEXT: "#1f77b4",
    BlockType.LIST_ITEM: "#17becf",
    BlockType.TABLE: "#2ca02c",
    BlockType.TABLE_CAPTION: "#98df8a",
    BlockType.TABLE_FOOTNOTE: "#bcbd22",
    BlockType.FIGURE: "#9467bd",
    BlockType.FIGURE_CAPTION: "#c5b0d5",
    BlockType.FIGURE_FOOTNOTE: "#8c564b",
    BlockType.EQUATION: "#e377c2",
    BlockType.HEADER: "#7f7f7f",
    BlockType.FOOTER: "#7f7f7f",
    BlockType.PAGE_NUMBER: "#7f7f7f",
    BlockType.LINE: "#1f77b4",
    BlockType.UNKNOWN: "#000000",
}


def type_color(kind: BlockType) -> str:
    """The `#rrggbb` colour of a block type."""
    return TYPE_COLORS.get(kind, "#000000")
