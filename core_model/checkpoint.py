"""Checkpoints: find them, read their config and tokenizer, load the model.

A checkpoint is a directory with `config.json`, `tokenizer.json` and the weights, either one
`model.safetensors` or shards listed in `model.safetensors.index.json` (the Hugging Face
layout of deepseek-ai/DeepSeek-OCR). A Hugging Face repo id is resolved through
`huggingface_hub` (optional dependency) when the hub or its local cache has it.

Both model families load this way: `read_config` tells DeepSeek-OCR from DeepSeek-OCR-2 by
config.json (`architectures`, else `vision_config`; see `core_model.config.model_family`)
and returns a `DeepseekOCRConfig` or a `DeepseekOCR2Config`.

`load_pretrained` checks config and tokenizer first, builds the model with its parameters on
the `meta` device and loads the weights straight onto the target device and dtype (see
`weights.py`). It does not know the architecture: the model comes from
`model_factory(config)`, by default `core_model.model.DeepseekOCRForCausalLM`, which builds
the family the config names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from core_model.config import ModelConfig, config_from_dict
from core_model.tokenizer import Tokenizer, load_tokenizer
from core_model.weights import (
    CONFIG_FILE,
    INDEX_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    LoadReport,
    load_weights,
    parameters_on_meta,
    save_checkpoint,
    weight_files,
)

__all__ = [
    "CONFIG_FILE",
    "INDEX_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "LoadReport",
    "default_device",
    "default_dtype",
    "load_pretrained",
    "load_weights",
    "parameters_on_meta",
    "read_config",
    "read_tokenizer",
    "resolve_checkpoint",
    "save_checkpoint",
    "weight_files",
]


def resolve_checkpoint(path_or_repo_id: str | Path) -> Path:
    """A local checkpoint directory for a path or a Hugging Face repo id.

    An existing directory is returned as is. Otherwise a name of the form `owner/name` is
    downloaded with `huggingface_hub.snapshot_download` (config, tokenizer, safetensors only),
    falling back to the local hub cache when the hub cannot be reached.

    Raises:
        CheckpointError: For a path that is not a directory, a repo id that can be neither
            downloaded nor found in the cache, or a missing `huggingface_hub`.
    """
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; give the checkpoint directory that holds it")
    name = str(path_or_repo_id)
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or name.startswith((".", "~")):
        raise CheckpointError(f"no checkpoint directory at {name} (and it is not a repo id)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise CheckpointError(
            f"no directory {name}; to fetch it as a Hugging Face repo id install huggingface_hub "
            "(pip install 'dsocr-connectors[hub]')"
        ) from exc
    patterns = ["*.json", "*.safetensors"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as online_error:  # network, auth, unknown repo: try the cache
        try:
            return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
        except Exception:
            raise CheckpointError(
                f"no directory {name}, and the Hugging Face repo {name} could not be downloaded "
                f"({type(online_error).__name__}: {online_error}) nor found in the local cache"
            ) from online_error


def read_config(directory: str | Path) -> ModelConfig:
    """The model configuration from `directory/config.json`, of either family.

    Raises:
        CheckpointError: When the file is missing, not valid JSON, or names an architecture
            (or transformers' converted layout) this package does not load.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {CONFIG_FILE}")
    try:
        return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid model config: {exc}") from exc


def read_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint directory, with a `CheckpointError` when it is missing."""
    try:
        return load_tokenizer(directory)
    except (FileNotFoundError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory}: {exc} ({TOKENIZER_FILE} needed)") from exc


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bfloat16 on a GPU, float32 on the CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _default_factory(config: ModelConfig) -> nn.Module:
    from core_model.model import DeepseekOCRForCausalLM  # late: configs load without it

    return DeepseekOCRForCausalLM(config)


def load_pretrained(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    model_factory: Callable[[ModelConfig], nn.Module] | None = None,
    strict: bool = True,
) -> tuple[nn.Module, ModelConfig, Tokenizer]:
    """Model, config and tokenizer of a checkpoint directory or Hugging Face repo id.

    Args:
        path: Checkpoint directory or repo id (see `resolve_checkpoint`).
        device: Default: CUDA when available, else CPU.
        dtype: Default: bfloat16 on a GPU, float32 on the CPU.
        model_factory: Builds the model from the config; default
            `core_model.model.DeepseekOCRForCausalLM` (either family).
        strict: See `load_weights`.

    Returns:
        The model in eval mode on `device`, its config and its tokenizer.

    Raises:
        CheckpointError: For anything missing or not fitting, before any weight is read
            when the problem is in the config, tokenizer or names.
    """
    directory = resolve_checkpoint(path)
    config = read_config(directory)
    tokenizer = read_tokenizer(directory)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    with parameters_on_meta():
        model = (model_factory or _default_factory)(config)
    load_weights(model, directory, device=device, dtype=dtype, strict=strict)
    return model.eval(), config, tokenizer
