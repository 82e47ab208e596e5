"""Safetensors weights: read them into a model straight onto a device, and write them.

Loading expects the model built with its parameters on the `meta` device
(`parameters_on_meta`: no memory, no random init). Names and shapes are checked against the
model before any tensor is read; then each tensor is read from safetensors directly onto the
target device, cast to the target dtype and put in place, so host memory holds at most one
tensor (or one memory-mapped shard) beside the model, never a second copy of it.
Knows nothing about configs, tokenizers or the architecture; see `checkpoint.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from core_model.tokenizer import TOKENIZER_FILE

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DERIVED_BUFFERS = ("position_ids",)  # stored by the release, recomputed by a model that wants it
_SHOW = 5  # names shown per kind of problem in an error message


class CheckpointError(Exception):
    """A checkpoint that cannot be found, read or loaded into the model."""


@dataclass
class LoadReport:
    """What `load_weights` did with the checkpoint's names."""

    loaded: int = 0
    missing: list[str] = field(default_factory=list)  # not in the file (strict=False only)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    ignored: list[str] = field(default_factory=list)  # derived buffers the model recomputes


def weight_files(directory: str | Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, from the shard index or the single weights file.

    Raises:
        CheckpointError: When there are no weights, the index is unreadable or a shard it
            names is absent.
    """
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is not a safetensors index: {exc}") from exc
        absent = sorted({f for f in weight_map.values() if not (directory / f).is_file()})
        if absent:
            raise CheckpointError(f"{index} names shards that are absent: {', '.join(absent)}")
        return {name: directory / file for name, file in weight_map.items()}
    single = directory / WEIGHTS_FILE
    candidates = [single] if single.is_file() else sorted(directory.glob("*.safetensors"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise CheckpointError(
            f"checkpoint {directory} needs {WEIGHTS_FILE} or {INDEX_FILE}; "
            f"safetensors found: {found}"
        )
    with safe_open(str(candidates[0]), framework="pt") as handle:
        return {name: candidates[0] for name in handle.keys()}


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with every parameter on the `meta` device; buffers stay real.

    A parameter is moved to `meta` the moment it is registered, before the module's init
    code fills it, so construction costs neither memory nor time. Buffers (rotary tables,
    position ids) keep their computed values, so a checkpoint need not store them.
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def _describe(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW]) + (", ..." if len(names) > _SHOW else "")
    return f"{len(names)} {kind}: {shown}"


def load_weights(
    model: nn.Module,
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    strict: bool = True,
) -> LoadReport:
    """Load a checkpoint's tensors into `model`, each straight onto `device` in `dtype`.

    Floating-point tensors are cast to `dtype`; integer tensors keep theirs. Buffers the
    checkpoint does not hold are moved to `device` unchanged. With `strict=False`, parameters
    the checkpoint lacks keep their values (moved and cast) or, when on `meta`, get
    uninitialised storage; either way they are listed in the report and logged.

    Args:
        model: The model, typically built inside `parameters_on_meta()`.
        directory: The checkpoint directory.
        device: Where the weights go.
        dtype: Floating-point dtype of the weights.
        strict: Whether missing or unexpected names are an error.

    Raises:
        CheckpointError: Naming missing and unexpected names (first few and counts) and
            every shape mismatch; shape mismatches are errors even with `strict=False`.
    """
    device = torch.device(device)
    files = weight_files(directory)
    expected = model.state_dict(keep_vars=True)
    buffers = {name for name, _ in model.named_buffers()}
    shapes = _read_shapes(files)

    report = LoadReport()
    report.ignored = sorted(n for n in shapes if n not in expected and _is_derived(n))
    report.unexpected = sorted(n for n in shapes if n not in expected and not _is_derived(n))
    # A buffer the checkpoint lacks is fine when the model computed it (it is not on meta).
    report.missing = sorted(
        n for n, t in expected.items() if n not in shapes and (n not in buffers or t.is_meta)
    )
    mismatched = [
        f"{n} {list(shapes[n])} in checkpoint vs {list(t.shape)} in model"
        for n, t in expected.items()
        if n in shapes and tuple(shapes[n]) != tuple(t.shape)
    ]
    problems = [_describe("shape mismatches", mismatched)] if mismatched else []
    if strict and report.missing:
        problems.append(_describe("missing from the checkpoint", report.missing))
    if strict and report.unexpected:
        problems.append(_describe("unexpected in the checkpoint", report.unexpected))
    if problems:
        raise CheckpointError(
            f"checkpoint {directory} does not fit the model: " + "; ".join(problems)
        )

    by_file: dict[Path, list[str]] = {}
    for name in shapes:
        if name in expected:
            by_file.setdefault(files[name], []).append(name)
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt", device=_safetensors_device(device)) as handle:
            for name in names:
                _assign(model, name, _cast(handle.get_tensor(name), device, dtype))
                report.loaded += 1
    _finish(model, device, dtype)
    if report.missing or report.unexpected:
        logger.warning(
            "checkpoint %s: %s",
            directory,
            "; ".join(
                _describe(kind, names)
                for kind, names in (("missing", report.missing), ("unexpected", report.unexpected))
                if names
            ),
        )
    return report


def _is_derived(name: str) -> bool:
    return name.rpartition(".")[2] in DERIVED_BUFFERS


def _read_shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    by_file: dict[Path, list[str]] = {}
    for name, file in files.items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            present = set(handle.keys())
            absent = [n for n in names if n not in present]
            if absent:
                raise CheckpointError(
                    f"{file} lacks tensors its index lists: {', '.join(absent[:_SHOW])}"
                )
            for name in names:
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def _safetensors_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def _cast(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    target = dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=device, dtype=target)


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        module._buffers[leaf] = tensor


def _is_on(tensor: torch.Tensor, device: torch.device) -> bool:
    same_type = tensor.device.type == device.type
    return same_type and (device.index is None or tensor.device.index == device.index)


def _finish(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Bring everything the checkpoint did not hold to `device`.

    Computed buffers move unchanged; parameters left on `meta` (strict=False) get
    uninitialised storage; real parameters the checkpoint lacked move and take `dtype`.
    """
    for module in model.modules():
        for leaf, buffer in module._buffers.items():
            if buffer is not None and not _is_on(buffer, device):
                if buffer.is_meta:
                    module._buffers[leaf] = torch.empty_like(buffer, device=device)
                else:
                    module._buffers[leaf] = buffer.to(device)
        for leaf, param in module._parameters.items():
            if param is None:
                continue
            target = dtype if param.is_floating_point() else param.dtype
            if _is_on(param, device) and param.dtype == target:
                continue
            if param.is_meta:
                moved = torch.empty(param.shape, dtype=target, device=device)
            else:
                moved = param.detach().to(device=device, dtype=target)
            module._parameters[leaf] = nn.Parameter(moved, requires_grad=False)


def save_checkpoint(
    state_dict: dict[str, torch.Tensor],
    directory: str | Path,
    *,
    config: dict[str, Any],
    max_shard_bytes: int | None = None,
    tokenizer_file: str | Path | None = None,
) -> Path:
    """Write tensors as safetensors (sharded with an index past `max_shard_bytes`) + config.

    Args:
        state_dict: Name -> tensor; written contiguous, on the CPU.
        directory: Created when absent.
        config: Written as `config.json`.
        max_shard_bytes: Largest shard; None writes one `model.safetensors`.
        tokenizer_file: A `tokenizer.json` to copy in, if any.

    Returns:
        The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    if tokenizer_file is not None:
        (directory / TOKENIZER_FILE).write_bytes(Path(tokenizer_file).read_bytes())
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if max_shard_bytes is None or len(shards) == 1:
        save_file(tensors, str(directory / WEIGHTS_FILE))
        return directory
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / file))
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2), encoding="utf-8")
    return directory
