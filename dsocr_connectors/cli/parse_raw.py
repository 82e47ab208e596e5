"""`dsocr parse-raw FILE...`: re-parse saved raw model outputs, no model and no GPU needed.

Each file is one document; a file holding several pages joined by the released
`<--- Page Split --->` line gives one page per piece. The result goes to stdout, or with
`-o DIR` to `DIR/<file stem>.<json|md|html>`, each path printed. Nothing is overwritten:
a name already written by this run or already in DIR gets `-2`, `-3`, ... (as `dsocr
convert` names documents); `--overwrite` replaces files of earlier runs instead. Files are
written atomically. Unreadable files are reported by name and the exit code is 1; the
other files are still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsocr_connectors.document import Document
from dsocr_connectors.parsing import parse_page, split_pages
from dsocr_connectors.pipeline.atomic_write import write_atomic
from dsocr_connectors.pipeline.naming import unique_stem

EXTENSIONS = {"json": "json", "md": "md", "html": "html"}


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return width, height


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "parse-raw", help="re-parse saved raw model outputs into json, markdown or html"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="raw output text files")
    p.add_argument("--format", choices=sorted(EXTENSIONS), default="json", help="output format")
    p.add_argument("--image-size", type=_image_size, metavar="WxH", help="page image size")
    p.add_argument("--prompt", help="the prompt the outputs were made with")
    p.add_argument("--tables", choices=["html", "pipe"], default="html", help="md tables")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="write files here, not stdout")
    p.add_argument("--overwrite", action="store_true",
                   help="with -o: replace files already in OUT_DIR (this run's own names "
                   "stay distinct)")
    p.set_defaults(func=run)


def parse_file(path: Path, *, image_size: tuple[int, int] | None, prompt: str | None) -> Document:
    """A `Document` from one raw output file (UTF-8; several pages if split)."""
    raw = path.read_text(encoding="utf-8")
    pages = [
        parse_page(piece, number=i, image_size=image_size, prompt=prompt)
        for i, piece in enumerate(split_pages(raw), start=1)
    ]
    return Document(source=str(path), pages=pages)


def render(doc: Document, fmt: str, tables: str = "html") -> str:
    if fmt == "json":
        return doc.to_json() + "\n"
    if fmt == "md":
        return doc.to_markdown(tables=tables) + "\n"
    return doc.to_html()


def run(args: argparse.Namespace) -> int:
    status = 0
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    given: set[str] = set()  # names this run wrote (case-folded)
    for name in args.files:
        path = Path(name)
        try:
            doc = parse_file(path, image_size=args.image_size, prompt=args.prompt)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"dsocr parse-raw: {path}: cannot read: {exc}", file=sys.stderr)
            status = 1
            continue
        text = render(doc, args.format, args.tables)
        if out_dir is None:
            sys.stdout.write(text)
        else:
            print(write_new(out_dir, path.stem, EXTENSIONS[args.format], text, given,
                            overwrite=args.overwrite))
    return status


def write_new(folder: Path, stem: str, extension: str, text: str, given: set[str], *,
              overwrite: bool = False) -> Path:
    """Write `text` to `folder/<stem>.<extension>`, or `<stem>-2...` when that name was
    given in this run (`given`, updated) or, unless `overwrite`, is already a file."""

    def is_taken(candidate: str) -> bool:
        return candidate.casefold() in given or (
            not overwrite and (folder / f"{candidate}.{extension}").exists())

    while True:
        chosen = unique_stem(stem, is_taken)
        target = folder / f"{chosen}.{extension}"
        try:
            write_atomic(target, text, overwrite=overwrite)
        except FileExistsError:  # another process took the name meanwhile: the next one
            continue
        given.add(chosen.casefold())
        return target
