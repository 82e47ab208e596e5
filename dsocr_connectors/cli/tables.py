"""`dsocr tables FILES -o OUT --format csv|xlsx|parquet`: every table, typed, with provenance.

FILES are documents saved by `dsocr convert` (`.json`) or inputs to convert (PDFs, images,
folders), which go through the same `Converter` options as `dsocr convert`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

from dsocr_connectors.deep.table_export import FORMATS, collect_tables, export_tables
from dsocr_connectors.document import Document


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tables", help="export every table as CSV, XLSX or Parquet")
    p.add_argument("files", nargs="+", help="document JSON files, or PDFs/images/folders")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", default="csv",
                   help=f"one or more of {', '.join(FORMATS)}, comma-separated")
    p.add_argument("--no-merge", action="store_true",
                   help="keep tables continued across pages apart")
    p.add_argument("--engine", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--mode", default="gundam")
    p.add_argument("--ocr", choices=["always", "auto", "never"],
                   help="default: always with a model, auto without (as dsocr convert)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print(f"dsocr tables: unknown format {', '.join(unknown)}; use {FORMATS}", file=sys.stderr)
        return 1
    tables = collect_tables(_documents(args), merge=not args.no_merge)
    for fmt in formats:
        for path in export_tables(tables, args.out, fmt):
            print(path)
    print(f"{len(tables)} tables", file=sys.stderr)
    return 0


def _documents(args: argparse.Namespace) -> Iterator[Document]:
    saved = [Path(f) for f in args.files if f.endswith(".json")]
    inputs = [f for f in args.files if not f.endswith(".json")]
    for path in saved:
        yield Document.from_json(path.read_text(encoding="utf-8"))
    if inputs:
        from dsocr_connectors.pipeline import Converter

        converter = Converter(engine=args.engine, model=args.model, mode=args.mode,
                              ocr=args.ocr, device=args.device)
        yield from converter.iter_documents(inputs)
