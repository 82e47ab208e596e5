"""`Parse the figure.` output -> `ChartData` (series, categories, values) and a `Table`.

DeepSeek-OCR was trained to render chart data as tables; in practice its output for a chart
is an HTML table, a Markdown pipe table, delimited lines, `label: value` lines or a
dict literal, sometimes after a title line. Each form is read without `eval`. The first
column holds the categories and the header row the series names; a chart whose output is
none of these (a photo described in prose) gives None and the caller keeps the text.
"""

from __future__ import annotations

import re
from typing import Any

from dsocr_connectors.deep.literals import find_literal
from dsocr_connectors.deep.numbers import detect_scale, parse_value
from dsocr_connectors.document import ChartData, ChartSeries, Table, TableCell


def parse_chart(text: str) -> ChartData | None:
    """Chart data from a model output, or None when the output holds no data."""
    title, rows = _rows_from_text(text)
    if rows is None:
        return None
    chart = chart_from_rows(rows, title=title)
    if chart is not None:
        chart.source_text = text
    return chart


def chart_from_rows(rows: list[list[str]], *, title: str | None = None) -> ChartData | None:
    """Rows of strings (header first) -> ChartData; None when no column holds numbers."""
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2 or max(len(r) for r in rows) < 2:
        return None
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    header, body = rows[0], rows[1:]
    if all(parse_value(c).kind in ("number", "percent") for c in header[1:] if c.strip()) and \
            not _is_years(header[1:]):
        header, body = [""] + [f"series {i}" for i in range(1, width)], rows
    series = []
    kinds = set()
    for c in range(1, width):
        parsed = [parse_value(row[c]) for row in body]
        if not any(p.kind in ("number", "percent") for p in parsed):
            continue
        kinds |= {p.kind for p in parsed if p.kind in ("number", "percent")}
        series.append(ChartSeries(name=header[c].strip() or f"series {c}",
                                  values=[p.value for p in parsed],
                                  raw_values=[row[c] for row in body]))
    if not series:
        return None
    units = None
    scale_text = " ".join([title or "", *header])
    if kinds == {"percent"} or re.search(r"%|percent|百分比", scale_text, re.IGNORECASE):
        units = "%"
    elif (scale := detect_scale(scale_text))[0] != 1.0 or scale[1]:
        units = " ".join(x for x in (scale[1], _scale_word(scale[0])) if x)
    return ChartData(title=title, x_title=header[0].strip() or None, units=units,
                     categories=[row[0].strip() for row in body], series=series)


def chart_to_table(chart: ChartData) -> Table:
    """The chart as a table: categories down the first column, one column per series."""
    header = [chart.x_title or ""] + [s.name for s in chart.series]
    cells = [TableCell(row=0, col=c, text=t, is_header=True) for c, t in enumerate(header)]
    for r, category in enumerate(chart.categories, start=1):
        cells.append(TableCell(row=r, col=0, text=category))
        for c, s in enumerate(chart.series, start=1):
            raw = s.raw_values[r - 1] if r - 1 < len(s.raw_values) else ""
            cells.append(TableCell(row=r, col=c, text=raw))
    return Table(num_rows=len(chart.categories) + 1, num_cols=len(header), cells=cells,
                 header_rows=1)


def _rows_from_text(text: str) -> tuple[str | None, list[list[str]] | None]:
    if "<table" in text.lower() or "<tr" in text.lower():
        from dsocr_connectors.parsing.tables import parse_table

        start = text.lower().find("<t")
        table = parse_table(text[start:])
        return _title(text[:start]), table.grid() if table.num_rows else None
    lines = [line.strip() for line in text.strip().splitlines()]
    pipe = [line for line in lines if line.startswith("|") or line.count("|") >= 2]
    if len(pipe) >= 2:
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in pipe
                if not re.fullmatch(r"[\s|:\-]+", line)]
        return _title("\n".join(lines[: lines.index(pipe[0])])), rows
    literal = find_literal(text)
    if isinstance(literal, dict):
        rows = _rows_from_literal(literal)
        if rows:
            return _literal_title(literal), rows
    for sep in ("\t", ",", ";"):
        split = [line.split(sep) for line in lines if sep in line]
        if len(split) >= 2 and len({len(r) for r in split}) == 1:
            first = lines.index(next(line for line in lines if sep in line))
            return _title("\n".join(lines[:first])), [[c.strip() for c in r] for r in split]
    pairs = [re.match(r"^(.+?)\s*[:：]\s*(\S.*)$", line) for line in lines]
    pairs = [m for m in pairs if m and parse_value(m.group(2)).kind in ("number", "percent")]
    if len(pairs) >= 2:
        return None, [["", "value"]] + [[m.group(1), m.group(2)] for m in pairs]
    return None, None


def _rows_from_literal(data: dict[str, Any]) -> list[list[str]] | None:
    """{"categories"/"x": [...], "series": {name: [...]} | [{"name", "values"}]} or a flat map."""
    categories = data.get("categories") or data.get("x") or data.get("labels")
    series = data.get("series") or data.get("data") or data.get("y")
    if isinstance(series, dict):
        series = [{"name": k, "values": v} for k, v in series.items()]
    if isinstance(series, list) and series and not isinstance(series[0], dict):
        series = [{"name": data.get("y_title") or "value", "values": series}]
    if isinstance(categories, list) and isinstance(series, list):
        names = [str(s.get("name", f"series {i + 1}")) for i, s in enumerate(series)]
        rows = [[str(data.get("x_title") or "")] + names]
        for r, category in enumerate(categories):
            rows.append([str(category)] + [_at(s.get("values", []), r) for s in series])
        return rows
    flat = {k: v for k, v in data.items() if isinstance(v, (int, float, str))}
    numeric = {k: v for k, v in flat.items() if parse_value(str(v)).kind in ("number", "percent")}
    if len(numeric) >= 2:
        return [["", "value"]] + [[str(k), str(v)] for k, v in numeric.items()]
    return None


def _at(values: Any, index: int) -> str:
    return str(values[index]) if isinstance(values, list) and index < len(values) else ""


def _literal_title(data: dict[str, Any]) -> str | None:
    title = data.get("title")
    return str(title) if title else None


def _title(prefix: str) -> str | None:
    lines = [re.sub(r"^#+\s*", "", line).strip() for line in prefix.strip().splitlines()]
    lines = [re.sub(r"</?center>", "", line).strip() for line in lines if line.strip()]
    return lines[-1] if lines else None


def _is_years(cells: list[str]) -> bool:
    values = [c.strip() for c in cells if c.strip()]
    return bool(values) and all(re.fullmatch(r"(19|20)\d\d", v) for v in values)


def _scale_word(scale: float) -> str | None:
    words = {1e3: "thousands", 1e4: "ten-thousands", 1e6: "millions", 1e8: "hundred-millions",
             1e9: "billions", 1e12: "trillions"}
    return words.get(scale)
