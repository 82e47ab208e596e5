"""A DeepSeek-OCR-2 checkpoint in the released layout loads by path, and `dsocr ocr --model DIR`
decodes the greedy tokens of transformers' `deepseek_ocr2` holding the same weights.

The checkpoint (`tiny_ocr2_checkpoint`, tests/conftest.py) is config.json as released
(`architectures: DeepseekOCR2ForCausalLM`, `vision_config.width.qwen2-0-5b`), the released
parameter names in model.safetensors and the real tokenizer.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core_model.checkpoint import CheckpointError, load_pretrained, read_config
from core_model.config import (
    DEEPSEEK_OCR,
    DEEPSEEK_OCR_2,
    DeepseekOCR2Config,
    DeepseekOCRConfig,
    model_family,
)
from core_model.prompt import GROUNDING_MARKDOWN, build_prompt_ids
from dsocr_connectors.cli import main
from dsocr_connectors.cli.info import check_model
from dsocr_connectors.cli.ocr import open_image
from tests.conftest import TINY_CONFIG, TINY_OCR2_CONFIG

pytest.importorskip("transformers.models.deepseek_ocr2")
from tests.ocr2_reference import reference_inputs, reference_model  # noqa: E402

MAX_NEW_TOKENS = 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_ocr2_checkpoint):
    return load_pretrained(tiny_ocr2_checkpoint, device="cpu", dtype=torch.float32)


def write_page(path, size, seed) -> str:
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8))
    coarse.resize((w, h), Image.Resampling.BILINEAR).save(path)
    return str(path)


def reference_tokens(loaded, image_path: str, mode: str) -> list[int]:
    """transformers' greedy tokens for the page, up to EOS, with the checkpoint's weights."""
    model, _, tokenizer = loaded
    image = model.prepare_image(open_image(image_path), mode)
    with torch.no_grad():
        count = model.encode_images([image])[0].shape[0]
        ids = torch.tensor(build_prompt_ids(tokenizer, GROUNDING_MARKDOWN, count).ids)
        out = reference_model(model).generate(
            input_ids=ids[None], **reference_inputs([image]), max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
        )
    tokens = out[0, len(ids) :].tolist()
    return tokens[: tokens.index(tokenizer.eos_id)] if tokenizer.eos_id in tokens else tokens


def dsocr_ocr(capsys, checkpoint, image_path: str, mode: str) -> dict:
    code = main([
        "ocr", image_path, "--model", str(checkpoint), "--device", "cpu", "--mode", mode,
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--format", "json",
    ])
    out = capsys.readouterr()
    assert code == 0, out.err
    [record] = json.loads(out.out)
    return record


def test_checkpoint_loads_by_path_as_deepseek_ocr_2(loaded, tiny_ocr2_checkpoint):
    model, config, tokenizer = loaded
    assert isinstance(config, DeepseekOCR2Config) and model.family == DEEPSEEK_OCR_2
    assert config.sam.downsample_channels == (32, 32)  # net_3 = the Qwen2 width, as released
    assert tokenizer.image_id == config.image_token_id == 128815
    assert not hasattr(model.model, "image_newline")
    # strict loading: every released name was in the file and nothing else
    assert model.model.qwen2_model.query_768.weight.abs().sum() > 0
    ok, message = check_model(str(tiny_ocr2_checkpoint))  # `dsocr info --model DIR`
    assert ok and "deepseek-ocr-2" in message, message


def test_dsocr_ocr_decodes_the_tokens_of_transformers_base(loaded, tiny_ocr2_checkpoint, capsys, tmp_path):
    path = write_page(tmp_path / "page.png", (1100, 800), seed=1)
    record = dsocr_ocr(capsys, tiny_ocr2_checkpoint, path, "base")
    assert record["num_vision_tokens"] == 257
    want = reference_tokens(loaded, path, "base")
    assert len(want) > 0
    assert record["token_ids"] == want


def test_dsocr_ocr_decodes_the_tokens_of_transformers_gundam(loaded, tiny_ocr2_checkpoint, capsys, tmp_path):
    path = write_page(tmp_path / "wide.png", (1600, 800), seed=2)
    record = dsocr_ocr(capsys, tiny_ocr2_checkpoint, path, "gundam")
    assert record["num_vision_tokens"] == 257 + 2 * 144
    assert record["token_ids"] == reference_tokens(loaded, path, "gundam")


def test_read_config_tells_the_families_apart(tmp_path):
    def config_of(raw: dict):
        (tmp_path / "config.json").write_text(json.dumps(raw))
        return read_config(tmp_path)

    assert isinstance(config_of(TINY_OCR2_CONFIG), DeepseekOCR2Config)
    assert isinstance(config_of(TINY_CONFIG), DeepseekOCRConfig)
    unnamed = {k: v for k, v in TINY_OCR2_CONFIG.items() if k != "architectures"}
    assert isinstance(config_of(unnamed), DeepseekOCR2Config)  # vision_config says it
    assert model_family({"architectures": ["DeepseekOCRForCausalLM"]}) == DEEPSEEK_OCR
    with pytest.raises(CheckpointError, match="transformers' converted"):
        config_of({**TINY_OCR2_CONFIG, "model_type": "deepseek_ocr2"})
    with pytest.raises(CheckpointError, match="unsupported architectures"):
        config_of({**TINY_CONFIG, "architectures": ["LlamaForCausalLM"]})
