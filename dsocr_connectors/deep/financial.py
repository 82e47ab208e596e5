"""HTML tables -> typed, analytics-grade frames.

A `Table` (cells with spans, header rows) becomes a `TypedTable`: column paths from the header
rows (multi-level headers flattened to "Revenue / 2023" with the path kept), row labels from
the leading text columns, and every body cell read by `numbers.parse_value` with the table's
scale (from the caption or header, "in millions") applied. The raw string stays beside every
value: `to_frame()` gives the numbers, `to_frame("raw")` the strings, `to_long()` one row per
cell with both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsocr_connectors.deep.numbers import ParsedValue, detect_scale, parse_value
from dsocr_connectors.document import Table

PATH_SEPARATOR = " / "


@dataclass
class TypedTable:
    columns: list[tuple[str, ...]]  # header path per value column
    row_labels: list[str]
    cells: list[list[ParsedValue]]  # rows x value columns
    scale: float = 1.0
    currency: str | None = None
    label_columns: int = 1
    flags: list[str] = field(default_factory=list)

    @property
    def column_names(self) -> list[str]:
        return [PATH_SEPARATOR.join(p for p in path if p) or f"column {i + 1}"
                for i, path in enumerate(self.columns)]

    def to_frame(self, what: str = "value") -> Any:
        """A pandas DataFrame indexed by row label: "value" (floats, NaN for nil/text) or "raw"."""
        import pandas as pd

        if what not in ("value", "raw"):
            raise ValueError(f"what must be 'value' or 'raw', not {what!r}")
        rows = [[getattr(c, what) for c in row] for row in self.cells]
        frame = pd.DataFrame(rows, columns=_unique(self.column_names), index=self.row_labels)
        return frame.astype("float64") if what == "value" else frame

    def to_long(self) -> Any:
        """One row per body cell: row label, column, column path, raw, value, kind, unit."""
        import pandas as pd

        records = []
        for r, (label, row) in enumerate(zip(self.row_labels, self.cells)):
            for c, cell in enumerate(row):
                records.append({
                    "row": r, "row_label": label, "col": c,
                    "column": self.column_names[c],
                    "column_path": list(self.columns[c]),
                    "raw": cell.raw, "value": cell.value, "kind": cell.kind, "unit": cell.unit,
                    "footnotes": list(cell.footnotes),
                })
        return pd.DataFrame.from_records(records)


def type_table(table: Table, *, caption: str | None = None) -> TypedTable:
    """Read a `Table` as numbers. The scale comes from `caption` or the header cells."""
    grid = table.grid(fill_spans=True)
    if not grid:
        return TypedTable(columns=[], row_labels=[], cells=[], flags=["empty"])
    header_rows = table.header_rows or _guess_header_rows(grid)
    header_text = " ".join(" ".join(row) for row in grid[:header_rows])
    scale, currency = detect_scale(f"{caption or ''} {header_text}")
    body = grid[header_rows:]
    label_columns = _label_columns(body)
    columns = []
    for c in range(label_columns, table.num_cols):
        path = tuple(_dedupe_path([grid[r][c].strip() for r in range(header_rows)]))
        columns.append(path)
    row_labels = [" ".join(x.strip() for x in row[:label_columns] if x.strip()) for row in body]
    cells = [[parse_value(x, scale=scale) for x in row[label_columns:]] for row in body]
    flags = [] if table.header_rows else (["header_guessed"] if header_rows else ["no_header"])
    return TypedTable(columns, row_labels, cells, scale, currency, label_columns, flags)


def _guess_header_rows(grid: list[list[str]]) -> int:
    """Rows at the top with no numeric body cell count as header (at most 3)."""
    count = 0
    for row in grid[:3]:
        kinds = [parse_value(x).kind for x in row[1:]]
        if any(k in ("number", "percent") for k in kinds) and not _looks_like_years(row[1:]):
            break
        count += 1
    return min(count, len(grid) - 1) if len(grid) > 1 else 0


def _looks_like_years(cells: list[str]) -> bool:
    values = [x.strip() for x in cells if x.strip()]
    return bool(values) and all(len(v) == 4 and v.isdigit() and v[:2] in ("19", "20")
                                for v in values)


def _label_columns(body: list[list[str]]) -> int:
    """Leading columns where most cells are text, not numbers (at least one column)."""
    if not body or not body[0]:
        return 0
    count = 0
    for c in range(len(body[0]) - 1):
        kinds = [parse_value(row[c]).kind for row in body]
        textual = sum(k == "text" for k in kinds)
        numeric = sum(k in ("number", "percent") for k in kinds)
        if textual <= numeric:
            break
        count += 1
    return max(count, 1)


def _dedupe_path(parts: list[str]) -> list[str]:
    """A spanned header cell repeats down its rows; keep each level once."""
    out: list[str] = []
    for part in parts:
        if part and (not out or out[-1] != part):
            out.append(part)
    return out


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
