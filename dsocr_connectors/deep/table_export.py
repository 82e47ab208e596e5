"""Every table of many documents, with provenance, to CSV, XLSX or Parquet (`dsocr tables`).

Three shapes of the same data:
- the index: one row per table (id, source, pages, block indices, boxes, caption, size,
  scale, currency);
- per table, the typed wide frame (row labels x flattened column paths, numbers);
- the cells: one row per body cell with the table id and source, page and box provenance,
  the raw string beside the parsed value.
CSV writes `index.csv`, `cells.csv` and one `<table id>.csv` per table; XLSX one workbook with
an `index` sheet, a `cells` sheet and a sheet per table; Parquet `index.parquet` and
`cells.parquet`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dsocr_connectors.deep.financial import TypedTable, type_table
from dsocr_connectors.deep.table_merge import DocumentTable, document_tables
from dsocr_connectors.document import Document

FORMATS = ("csv", "xlsx", "parquet")


@dataclass
class ExportedTable:
    table_id: str
    source: str
    found: DocumentTable
    typed: TypedTable


def collect_tables(documents: Iterable[Document], *, merge: bool = True) -> list[ExportedTable]:
    out = []
    stems: dict[str, int] = {}
    for document in documents:
        stem = _slug(Path(document.source).stem or "document")
        stems[stem] = stems.get(stem, 0) + 1
        stem = stem if stems[stem] == 1 else f"{stem}-{stems[stem]}"
        for k, found in enumerate(document_tables(document, merge=merge), start=1):
            table_id = f"{stem}_p{found.page}_t{k}"
            out.append(ExportedTable(table_id, document.source, found,
                                     type_table(found.table, caption=found.caption)))
    return out


def index_frame(tables: list[ExportedTable]) -> Any:
    import pandas as pd

    return pd.DataFrame.from_records([{
        "table_id": t.table_id,
        "source": t.source,
        "pages": json.dumps([p.page for p in t.found.parts]),
        "blocks": json.dumps([p.block for p in t.found.parts]),
        "boxes": json.dumps([p.boxes for p in t.found.parts]),
        "caption": t.found.caption,
        "num_rows": t.found.table.num_rows,
        "num_cols": t.found.table.num_cols,
        "header_rows": t.found.table.header_rows,
        "scale": t.typed.scale,
        "currency": t.typed.currency,
        "merged": len(t.found.parts) > 1,
    } for t in tables], columns=["table_id", "source", "pages", "blocks", "boxes", "caption",
                                 "num_rows", "num_cols", "header_rows", "scale", "currency",
                                 "merged"])


def cells_frame(tables: list[ExportedTable]) -> Any:
    import pandas as pd

    frames = []
    for t in tables:
        long = t.typed.to_long()
        if long.empty:
            continue
        long.insert(0, "source", t.source)
        long.insert(0, "table_id", t.table_id)
        long.insert(2, "first_page", t.found.page)
        long["column_path"] = long["column_path"].map(json.dumps)
        long["footnotes"] = long["footnotes"].map(json.dumps)
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["table_id", "source", "first_page", "row", "row_label",
                                     "col", "column", "column_path", "raw", "value", "kind",
                                     "unit", "footnotes"])
    return pd.concat(frames, ignore_index=True)


def export_tables(tables: list[ExportedTable], out_dir: Path, fmt: str) -> list[Path]:
    """Write `tables` under `out_dir` in `fmt`; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    index, cells = index_frame(tables), cells_frame(tables)
    written = []
    if fmt == "csv":
        index.to_csv(out_dir / "index.csv", index=False)
        cells.to_csv(out_dir / "cells.csv", index=False)
        written += [out_dir / "index.csv", out_dir / "cells.csv"]
        for t in tables:
            path = out_dir / f"{t.table_id}.csv"
            t.typed.to_frame().to_csv(path, index_label="row")
            written.append(path)
    elif fmt == "xlsx":
        import pandas as pd

        path = out_dir / "tables.xlsx"
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            index.to_excel(writer, sheet_name="index", index=False)
            cells.to_excel(writer, sheet_name="cells", index=False)
            for k, t in enumerate(tables, start=1):
                t.typed.to_frame().to_excel(writer, sheet_name=f"T{k}"[:31], index_label="row")
        written.append(path)
    else:
        index.to_parquet(out_dir / "index.parquet", index=False)
        cells.to_parquet(out_dir / "cells.parquet", index=False)
        written += [out_dir / "index.parquet", out_dir / "cells.parquet"]
    return written


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "document"
