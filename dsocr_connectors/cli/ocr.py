"""`dsocr ocr`: run the model on images and print what it generated, raw or as JSON.

This is the engine seen directly: no parsing, no document model. Each image is opened with
PIL (EXIF orientation applied, converted to RGB); an image that cannot be opened is reported
by name, the others still run, and the exit code is then 2 (as for a page the engine failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageOps

from core_model.engines import GROUNDING_MARKDOWN_PROMPT, MODES, PageRequest, PageResult
from core_model.engines.registry import load_engine

ENGINES = ("native", "vllm", "openai")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ocr",
        help="run the model on images, print its raw output",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint directory (native, vllm) or the served model name (openai)",
    )
    p.add_argument("--engine", choices=ENGINES, default="native", help="default: native")
    p.add_argument("--base-url", help="openai engine: API root, e.g. http://localhost:8000/v1")
    p.add_argument("--mode", choices=MODES, default="gundam", help="resolution mode")
    p.add_argument(
        "--prompt",
        default=GROUNDING_MARKDOWN_PROMPT,
        help=r"prompt; a literal \n becomes a newline, <image>\n is prepended if missing",
    )
    p.add_argument("--max-new-tokens", type=int, help="output limit per image")
    p.add_argument("--device", help="native engine: torch device, e.g. cuda:0")
    p.add_argument("--batch-size", type=int, default=8, help="images per engine call")
    p.add_argument("--timeout", type=float, help="openai engine: seconds per image")
    p.add_argument("--format", choices=("raw", "json"), default="raw", help="output format")
    p.add_argument("--stream", action="store_true", help="raw format: print text as it comes")
    p.set_defaults(func=run)


def normalise_prompt(prompt: str) -> str:
    """Turn a literal backslash-n into a newline; put `<image>\\n` first if it is missing."""
    prompt = prompt.replace("\\n", "\n")
    return prompt if "<image>" in prompt else "<image>\n" + prompt


def open_image(path: str) -> Image.Image:
    """Open an image as the model expects it: EXIF orientation applied, RGB.

    Raises:
        OSError: the file is missing or is not a readable image (the message names it).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"{path}: cannot open image: {exc}") from exc


def result_record(path: str, result: PageResult) -> dict[str, Any]:
    """The JSON object printed for one image."""
    return {
        "file": path,
        "text": result.text,
        "token_ids": result.token_ids,
        "finish_reason": result.finish_reason,
        "num_vision_tokens": result.num_vision_tokens,
        "num_prompt_tokens": result.num_prompt_tokens,
        "num_output_tokens": result.num_output_tokens,
        "timings": result.timings,
        "error": result.error,
    }


def build_engine(args: argparse.Namespace):
    """The engine named on the command line, with only the options that apply to it."""
    if args.engine == "openai":
        if not args.base_url:
            raise ValueError("--engine openai needs --base-url (e.g. http://localhost:8000/v1)")
        return load_engine(
            "openai",
            base_url=args.base_url,
            model=args.model,
            timeout=args.timeout,
            max_new_tokens=args.max_new_tokens,
        )
    if args.engine == "vllm":
        return load_engine("vllm", model=args.model, max_new_tokens=args.max_new_tokens)
    return load_engine(
        "native", model=args.model, device=args.device, max_new_tokens=args.max_new_tokens
    )


def batches(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def read_batch(
    engine, paths: list[str], args: argparse.Namespace, on_token=None
) -> list[PageResult]:
    """One result per path, in order; an image that cannot be opened gets an error result."""
    results: list[PageResult | None] = [None] * len(paths)
    requests, positions = [], []
    for i, path in enumerate(paths):
        try:
            image = open_image(path)
        except OSError as exc:
            results[i] = PageResult(text="", finish_reason="error", error=str(exc), key=path)
            continue
        requests.append(
            PageRequest(
                image=image,
                prompt=args.prompt,
                mode=args.mode,
                max_new_tokens=args.max_new_tokens,
                key=path,
            )
        )
        positions.append(i)
    if requests:
        try:
            generated = engine.generate(requests, on_token=on_token)
        except Exception as exc:  # an engine crash (e.g. out of memory) fails this batch only
            message = f"engine failed: {type(exc).__name__}: {exc}"
            generated = [
                PageResult(text="", finish_reason="error", error=f"{r.key}: {message}", key=r.key)
                for r in requests
            ]
        for i, result in zip(positions, generated, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


def run(args: argparse.Namespace) -> int:
    args.prompt = normalise_prompt(args.prompt)
    try:
        engine = build_engine(args)
    except Exception as exc:  # missing optional package, bad checkpoint, bad option
        print(f"dsocr ocr: cannot start the {args.engine} engine: {exc}", file=sys.stderr)
        return 1
    stream = args.stream and args.format == "raw"
    show_headers = len(args.images) > 1
    records: list[dict[str, Any]] = []
    failed = 0
    for paths in batches(args.images, 1 if stream else max(1, args.batch_size)):
        if stream and show_headers:
            print(f"==> {paths[0]} <==", flush=True)
        results = read_batch(engine, paths, args, _print_delta if stream else None)
        for path, result in zip(paths, results, strict=True):
            records.append(result_record(path, result))
            if result.finish_reason == "error":
                failed += 1
                where = "" if path in (result.error or "") else f"{path}: "
                print(f"dsocr ocr: {where}{result.error}", file=sys.stderr)
            elif result.finish_reason in ("length", "repetition"):
                print(
                    f"dsocr ocr: {path}: output cut ({result.finish_reason}) "
                    f"after {result.num_output_tokens} tokens",
                    file=sys.stderr,
                )
            if args.format == "raw" and stream:
                print(flush=True)
            elif args.format == "raw" and result.finish_reason != "error":
                if show_headers:
                    print(f"==> {path} <==")
                print(result.text)
    if args.format == "json":
        json.dump(records, sys.stdout, ensure_ascii=False, indent=2)
        print()
    return 2 if failed else 0


def _print_delta(index: int, token_id: int, delta: str) -> None:
    sys.stdout.write(delta)
    sys.stdout.flush()
