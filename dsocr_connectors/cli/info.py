"""`dsocr info`: the engines that can run here (and why not), torch, devices, the model.

Fast: torch is imported only to list devices, when it is a GPU build and the machine has a
GPU driver; the rest is read from the installed files.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

MODEL_ENV = "DSOCR_MODEL"  # the variable `dsocr convert` and `dsocr serve` read


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="engines, devices and the configured model")
    p.add_argument("--model", help=f"model folder to check (default: ${MODEL_ENV})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("engines:")
    for name, (is_available, why) in engines().items():
        print(f"  {name:<11} {'yes' if is_available else 'no '}  {why}")
    for line in devices():
        print(line)
    model = args.model or os.environ.get(MODEL_ENV)
    print(f"model: {model or f'none configured (--model or ${MODEL_ENV})'}")
    if model:
        is_ok, message = check_model(model)
        print(f"  {message}")
        return 0 if is_ok else 1
    return 0


def engines() -> dict[str, tuple[bool, str]]:
    """Engine name -> (available here, why or why not)."""
    from core_model.engines import available_engines

    found = {name: _as_pair(status) for name, status in available_engines().items()}
    found.setdefault("text-layer", (True, "reads born-digital PDF pages with pymupdf, no model"))
    return found


def devices() -> list[str]:
    """torch's version and build, and the CUDA devices it sees (asked only where there can
    be some: a GPU build of torch and a GPU driver)."""
    from core_model.torch_status import INSTALL_HINT, gpu_build, has_gpu_driver, torch_version

    version = torch_version()
    if version is None:
        return [f"torch: not installed; the native engine needs it: {INSTALL_HINT}"]
    build = gpu_build()
    lines = [f"torch: {version}, {build or 'CPU build'}"]
    if build is None or not has_gpu_driver():
        why = "a CPU build of torch" if build is None else "no GPU driver"
        lines.append(f"  no CUDA device ({why}); the native engine would run on the CPU (slow)")
        return lines
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i} {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("  no CUDA device visible to torch; the native engine would run on the CPU")
    return lines


def check_model(model: str) -> tuple[bool, str]:
    """Whether `model` is a folder whose config.json reads as a DeepSeek-OCR or DeepSeek-OCR-2
    config (cheap)."""
    path = Path(model)
    if not path.is_dir():
        return False, f"not a folder: {path}"
    config_file = path / "config.json"
    if not config_file.exists():
        return False, f"no config.json in {path}"
    try:
        import json

        from core_model.config import config_from_dict

        config = config_from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    except Exception as exc:
        return False, f"config.json does not load: {type(exc).__name__}: {exc}"
    weights = sorted(p.name for p in path.glob("*.safetensors"))
    decoder = config.decoder
    return True, (
        f"config loads: {decoder.num_hidden_layers} decoder layers, hidden {decoder.hidden_size}, "
        f"{config.family}; "
        f"{len(weights)} safetensors file(s)"
    )


def _as_pair(status: str) -> tuple[bool, str]:
    """"available: why" / "unavailable: why" (the registry's words) -> (flag, why)."""
    flag, _, why = status.partition(":")
    return flag.strip() == "available", why.strip() or status
