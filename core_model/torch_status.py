"""Whether torch is installed, and which build, without importing it.

torch is the `model` extra: the native engine needs it, the text-layer path and the vLLM and
OpenAI engines do not. Importing torch costs one to several seconds, so the questions that
the installed files can answer (is it there, which version, a CUDA or ROCm build) are
answered from them; only a GPU build on a machine with a GPU driver is worth importing torch
for, to ask which devices it sees.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from importlib import metadata
from pathlib import Path

INSTALL_HINT = "pip install 'dsocr-connectors[model]'"
CPU_INSTALL_HINT = (
    "pip install 'dsocr-connectors[model]' --extra-index-url https://download.pytorch.org/whl/cpu"
)


def torch_version() -> str | None:
    """The installed torch's version ("2.13.0+cpu"), or None when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:  # torch on the path without its metadata
        return "unknown version"


def require_torch(what: str) -> None:
    """Raise a `ModuleNotFoundError` saying how to install torch, when it is missing.

    Args:
        what: what needs torch, for the message ("the native engine").
    """
    if importlib.util.find_spec("torch") is None:
        raise ModuleNotFoundError(
            f"{what} needs torch, which is not installed: {INSTALL_HINT} "
            f"(on a machine without a GPU: {CPU_INSTALL_HINT})",
            name="torch",
        )


def gpu_build() -> str | None:
    """"CUDA 12.8" or "ROCm 6.2" for a GPU build of torch, None for a CPU build or no torch.

    Read from torch's generated `version.py`, which is not imported."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    except OSError:
        return None
    for key, name in (("cuda", "CUDA"), ("hip", "ROCm")):
        found = re.search(rf"^{key}\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        if found:
            return f"{name} {found.group(1)}"
    return None


def has_gpu_driver() -> bool:
    """Whether this machine has an NVIDIA or AMD GPU driver loaded (a cheap look at files)."""
    return (
        Path("/proc/driver/nvidia/version").exists()
        or Path("/dev/kfd").exists()
        or shutil.which("nvidia-smi") is not None
    )
