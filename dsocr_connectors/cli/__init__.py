"""The `dsocr` command line: one module per subcommand, each with `register(subparsers)`.

Exit codes: 0 all pages ok, 1 usage or fatal error, 2 some pages failed (see the report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ["schema", "parse_raw", "ocr", "convert", "info", "tables", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsocr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dsocr_connectors.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
