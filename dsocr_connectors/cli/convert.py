"""`dsocr convert FILES/FOLDERS -o OUT`: convert into a resumable output folder.

One run writes into an output folder at a time: a second run into it is refused (exit 3)
and names the run in its way, or with --wait waits for it and then does what is left.

Exit codes: 0 every page ok, recovered or read from the text layer; 2 some pages failed
(listed in the summary, with the pages that need a model); 1 usage or fatal error;
3 the output folder is in use by another run; 130 interrupted (rerun the same command to
resume).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from core_model.engines.interface import MODES
from dsocr_connectors.pipeline.output_folder import FORMATS, Summary

log = logging.getLogger("dsocr.convert")

MODEL_ENV = "DSOCR_MODEL"
EXIT_BUSY = 3


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
    p.add_argument("--dpi", type=_positive, default=144)
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="pages in flight at once (default: twice the engine's concurrency)")
    p.add_argument("--max-new-tokens", type=_positive)
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: the engine's choice)")
    p.add_argument("--ocr", choices=("always", "auto", "never"),
                   help="always (default with a model): the model reads every page, the text "
                   "layer checks it; auto: the text layer where usable, the model elsewhere "
                   "(default without a model); never: text layers only")
    p.add_argument("--password", help="password of encrypted PDFs")
    p.add_argument("--reparse", default="charts", choices=("off", "charts", "all"),
                   help="re-read figure regions: charts and chemistry (default), all, off")
    p.add_argument("--redo-failed", action="store_true",
                   help="convert failed pages again (the whole file when it failed as a whole)")
    p.add_argument("--wait", nargs="?", type=float, const=math.inf, default=0.0,
                   metavar="SECONDS", help="when another run is writing into the output "
                   "folder, wait for it (at most SECONDS) instead of stopping")
    p.add_argument("--no-recursive", action="store_true", help="do not descend into subfolders")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, short summary")
    remote = p.add_argument_group("a model behind an OpenAI-compatible server (--engine openai)")
    remote.add_argument("--base-url", metavar="URL",
                        help="the API root, e.g. http://gpu-box:8000/v1 (default: $OPENAI_BASE_URL)")
    remote.add_argument("--api-key", metavar="KEY",
                        help="bearer token (default: $OPENAI_API_KEY; prefer the variable)")
    remote.add_argument("--served-model", metavar="NAME",
                        help="the served model name (default: the one the server lists)")
    remote.add_argument("--timeout", type=float, metavar="S",
                        help="seconds per page, retries included (default 600)")
    remote.add_argument("--concurrency", type=int, metavar="N",
                        help="requests in flight at once (default 32)")
    remote.add_argument("--allow-insecure-key", action="store_true",
                        help="send the key over plain http to another machine")
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a whole number of at least 1, not {text!r}")
    return value


def _formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(unknown)}")
    return formats


def run(args: argparse.Namespace) -> int:
    from dsocr_connectors.pipeline import Converter, EngineUnavailable, OutputFolder
    from dsocr_connectors.pipeline.output_folder import FolderBusy, collect_sources

    missing = [i for i in args.inputs if not Path(i).exists()]
    if missing:
        return _fail(f"no such file or folder: {', '.join(missing)}")
    sources = collect_sources(args.inputs, args.output, recursive=not args.no_recursive)
    if not sources:
        return _fail(f"no PDF or image files in {', '.join(args.inputs)}")
    try:
        engine_options = remote_engine_options(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.engine == "openai":
        model = args.served_model or args.model
    else:
        model = args.model or (os.environ.get(MODEL_ENV) if args.engine != "text-layer" else None)
    usage = _check_engine_flags(args, model)
    if usage:
        return _fail(usage)
    options = dict(
        engine=args.engine, model=model, engine_options=engine_options,
        mode=args.mode, prompt=args.prompt, ocr=args.ocr,
        dpi=args.dpi, max_in_flight=args.batch_size, device=args.device,
        max_new_tokens=args.max_new_tokens, pages=args.pages, password=args.password,
        rerun_mode=args.rerun_mode, reparse=args.reparse,
    )
    try:
        if args.ray:
            summary = _convert_with_ray(args, sources, options)
        else:
            folder = OutputFolder(args.output, formats=args.format, redo_failed=args.redo_failed,
                                  wait=args.wait)
            with folder:  # before the engine loads: a busy folder is told at once
                with Converter(**options, progress=False if args.quiet else None) as converter:
                    if not converter.has_model:
                        _warn_no_model()
                    summary = folder.convert(converter, sources)
    except FolderBusy as exc:
        print(f"dsocr convert: {exc.describe()}; run again when it ends, or add --wait to "
              "start when it does", file=sys.stderr)
        return EXIT_BUSY
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


def _check_engine_flags(args: argparse.Namespace, model: str | None) -> str | None:
    """Combinations the engine would refuse, said in flags rather than Python arguments."""
    if args.ocr == "always" and model is None and args.engine in (None, "text-layer"):
        return (f"--ocr always needs a model: give --model (or ${MODEL_ENV}), or an "
                "--engine that reads pages")
    if args.engine == "native" and model is None:
        return f"--engine native needs a model: give --model (or ${MODEL_ENV})"
    return None


def remote_engine_options(args: argparse.Namespace) -> dict | None:
    """The `--engine openai` flags as `OpenAIEngine` arguments (None for other engines).

    Raises:
        ValueError: one of these flags given with another engine.
    """
    flags = (("--base-url", "base_url", args.base_url), ("--api-key", "api_key", args.api_key),
             ("--timeout", "timeout", args.timeout),
             ("--concurrency", "max_concurrency", args.concurrency),
             ("--allow-insecure-key", "allow_insecure_key", args.allow_insecure_key or None),
             ("--served-model", None, args.served_model))
    given = [(flag, key, value) for flag, key, value in flags if value is not None]
    if args.engine != "openai":
        if given:
            raise ValueError(f"{', '.join(f for f, _, _ in given)}: only for --engine openai")
        return None
    return {key: value for _, key, value in given if key is not None}


def _convert_with_ray(args: argparse.Namespace, sources: list[Path], options: dict) -> Summary:
    """`--ray`: the same conversion, one `Converter` per Ray replica (`ray_pipeline.py`)."""
    from dsocr_connectors.ray_pipeline import convert_with_ray

    if args.replicas is not None and args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, not {args.replicas}")
    if options["model"] is None and options["engine"] in (None, "text-layer"):
        _warn_no_model()
    return convert_with_ray(
        sources, args.output, num_replicas=args.replicas,
        num_gpus_per_replica=args.gpus_per_replica, redo_failed=args.redo_failed,
        formats=args.format, address=args.ray_address, progress=not args.quiet,
        wait=args.wait, **options,
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
    reasons = " ".join(reason for _, _, reason in others)
    if "encrypted PDF: a password is needed" in reasons:
        lines.append("encrypted PDFs: give the password with --password")
    elif "encrypted PDF: the password is wrong" in reasons:
        lines.append("encrypted PDFs: check the password given with --password")
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
