"""`dsocr schema`: print the JSON Schema of the document model."""

from __future__ import annotations

import argparse

from dsocr_connectors.document import json_schema


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("schema", help="print the JSON Schema of the document model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json_schema())
    return 0
