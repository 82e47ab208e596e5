"""The `dsocr` command line: one module per subcommand, each with `register(subparsers)`.

Exit codes: 0 all pages ok, 1 usage or fatal error, 2 some pages failed (see the report).

Only the module of the subcommand being run is imported (`dsocr --help` imports none), so
a command pays for its own dependencies only: `dsocr --help` starts in a few hundredths of a
second and `dsocr convert` without a model never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> one-line help, as each module's `register` says it (tests/test_startup.py checks)
COMMANDS = {
    "schema": "print the JSON Schema of the document model",
    "parse-raw": "re-parse saved raw model outputs into json, markdown or html",
    "ocr": "run the model on images, print its raw output",
    "convert": "convert PDFs and images into an output folder (resumable)",
    "info": "engines, devices and the configured model",
    "tables": "export every table as CSV, XLSX or Parquet",
    "serve": "serve the model over HTTP (OpenAI-compatible API, /v1/convert)",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `dsocr` parser. With `argv`, only the subcommand named there is registered in
    full (the others are listed by name and help); without, every subcommand is."""
    parser = argparse.ArgumentParser(prog="dsocr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = None if argv is None else _command_in(argv)
    for name, summary in COMMANDS.items():
        if argv is None or name == chosen:
            module = importlib.import_module(f"dsocr_connectors.cli.{name.replace('-', '_')}")
            module.register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand in `argv`: its first word not starting with '-' (the top-level options
    take no values), or None."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
