"""`dsocr convert FILES/FOLDERS -o OUT`: convert into a resumable output folder.

Exit codes: 0 every page ok, recovered or read from the text layer; 2 some pages failed
(listed in the summary, with the pages that need a model); 1 usage or fatal error;
130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core_model.engines.interface import MODES
from dsocr_connectors.pipeline.output_folder import FORMATS, Summary

log = logging.getLogger("dsocr.convert")

MODEL_ENV = "DSOCR_MODEL"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert PDFs and images into an output folder (resumable)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="PDFs, images, folders")
    p.add_argument("-o", "--output", required=True, type=Path, help="the output folder")
    p.add_argument("--format", default="md,json,figures", type=_formats,
                   help=f"comma-separated among {','.join(FORMATS)} (JSON is always written)")
    p.add_argument("--engine", help="native, vllm, openai, text-layer, or module:attr "
                   "(default: native when a model is configured, else the text layer)")
    p.add_argument("--model", help=f"model folder or id (default: ${MODEL_ENV})")
    p.add_argument("--mode", default="gundam", choices=MODES)
    p.add_argument("--rerun-mode", choices=MODES, help="mode to rerun looping pages in")
    p.add_argument("--prompt", help="the prompt (default: grounding Markdown)")
    p.add_argument("--pages", type=parse_pages, help="pages to convert, e.g. 1-3,5")
    p.add_argument("--dpi", type=int, default=144)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: the engine's choice)")
    p.add_argument("--ocr", choices=("always", "auto", "never"),
                   help="always (default with a model): the model reads every page, the text "
                   "layer checks it; auto: the text layer where usable, the model elsewhere "
                   "(default without a model); never: text layers only")
    p.add_argument("--password", help="password of encrypted PDFs")
    p.add_argument("--reparse", default="charts", choices=("off", "charts", "all"),
                   help="re-read figure regions: charts and chemistry (default), all, off")
    p.add_argument("--redo-failed", action="store_true", help="convert failed pages again")
    p.add_argument("--no-recursive", action="store_true", help="do not descend into subfolders")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, short summary")
    ray = p.add_argument_group("many machines (the ray extra)")
    ray.add_argument("--ray", action="store_true",
                     help="spread the documents over a Ray cluster, one model per replica")
    ray.add_argument("--ray-address", metavar="ADDR",
                     help="the cluster to join (default: $RAY_ADDRESS, else a local one)")
    ray.add_argument("--replicas", type=int, metavar="N",
                     help="converters at once (default: as many as the GPUs allow)")
    ray.add_argument("--gpus-per-replica", type=float, default=1.0, metavar="F",
                     help="GPUs per replica (0 for the text layer or a remote engine)")
    p.set_defaults(func=run)
    p.error = _usage_error(p)  # type: ignore[method-assign]


def _usage_error(parser: argparse.ArgumentParser):
    """argparse exits 2 on bad arguments; here 2 means "some pages failed", so exit 1."""

    def error(message: str) -> None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)

    return error


def parse_pages(text: str) -> list[int]:
    """'1-3,5' -> [1, 2, 3, 5] (1-based; raises argparse.ArgumentTypeError when malformed)."""
    numbers: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            first, _, last = part.partition("-")
            start, end = int(first), int(last or first)
            if start < 1 or end < start:
                raise ValueError(part)
            numbers.update(range(start, end + 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad page range {text!r} (want e.g. 1-3,5)") from exc
    if not numbers:
        raise argparse.ArgumentTypeError(f"bad page range {text!r} (want e.g. 1-3,5)")
    return sorted(numbers)


def _formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(unknown)}")
    return formats


def run(args: argparse.Namespace) -> int:
    import loaders
    from dsocr_connectors.pipeline import Converter, EngineUnavailable, OutputFolder

    missing = [i for i in args.inputs if not Path(i).exists()]
    if missing:
        return _fail(f"no such file or folder: {', '.join(missing)}")
    sources = list(loaders.iter_sources(args.inputs, recursive=not args.no_recursive))
    if not sources:
        return _fail(f"no PDF or image files in {', '.join(args.inputs)}")
    model = args.model or (os.environ.get(MODEL_ENV) if args.engine != "text-layer" else None)
    options = dict(
        engine=args.engine, model=model, mode=args.mode, prompt=args.prompt, ocr=args.ocr,
        dpi=args.dpi, batch_size=args.batch_size, device=args.device,
        max_new_tokens=args.max_new_tokens, pages=args.pages, password=args.password,
        rerun_mode=args.rerun_mode, reparse=args.reparse,
    )
    try:
        if args.ray:
            summary = _convert_with_ray(args, sources, options)
        else:
            converter = Converter(**options, progress=False if args.quiet else None)
            folder = OutputFolder(args.output, formats=args.format, redo_failed=args.redo_failed)
            if not converter.has_model:
                _warn_no_model()
            summary = folder.convert(converter, sources)
    except (ValueError, EngineUnavailable, ImportError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("dsocr convert: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a broken loader thread, a full disk: say so and stop
        log.debug("fatal error", exc_info=True)
        return _fail(f"{type(exc).__name__}: {exc}")
    report = format_summary(summary, args.output, quiet=args.quiet)
    if report:
        print(report)
    return summary.exit_code


def _convert_with_ray(args: argparse.Namespace, sources: list[Path], options: dict) -> Summary:
    """`--ray`: the same conversion, one `Converter` per Ray replica (`ray_pipeline.py`)."""
    from dsocr_connectors.ray_pipeline import convert_with_ray

    if args.replicas is not None and args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, not {args.replicas}")
    if options["model"] is None and options["engine"] in (None, "text-layer"):
        _warn_no_model()
    options["page_batch_size"] = options.pop("batch_size")
    return convert_with_ray(
        sources, args.output, num_replicas=args.replicas,
        num_gpus_per_replica=args.gpus_per_replica, redo_failed=args.redo_failed,
        formats=args.format, address=args.ray_address, progress=not args.quiet, **options,
    )


def format_summary(summary: Summary, output: Path, *, quiet: bool = False) -> str:
    """The end-of-run report: documents, pages by status, failed pages, pages needing a model."""
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.pages_by_status.items()))
    lines = []
    if not quiet:
        lines.append(
            f"{summary.num_converted} documents converted, {summary.num_skipped} already done "
            f"-> {output}"
        )
        lines.append(f"pages: {statuses or 'none'}")
    needs_model = set(summary.needs_model)
    others = [(s, n, r) for s, n, r in summary.failed if (s, n) not in needs_model]
    if needs_model:
        lines.append("pages that need a model (no model configured; use --model or $DSOCR_MODEL):")
        why = {(s, n): r.partition(": ")[2] for s, n, r in summary.failed}
        by_source: dict[tuple[str, str], list[int]] = {}
        for source, number in summary.needs_model:
            by_source.setdefault((source, why.get((source, number), "")), []).append(number)
        lines.extend(f"  {source}: pages {_ranges(numbers)}" + (f" ({reason})" if reason else "")
                     for (source, reason), numbers in by_source.items())
    if others:
        lines.append("failed pages:")
        lines.extend(f"  {source}, page {number}: {reason}" for source, number, reason in others)
    return "\n".join(lines)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and int(out[-1].split("-")[-1]) == n - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _warn_no_model() -> None:
    log.warning("no model configured (--model or $%s): reading PDF text layers only", MODEL_ENV)


def _fail(message: str) -> int:
    print(f"dsocr convert: error: {message}", file=sys.stderr)
    return 1
