"""The decoder against transformers' `deepseek_ocr2` text model, weights copied, fp32.

Checks logits for a full prefill and for incremental decoding through the static KV cache
(max abs difference <= 1e-5), and that every MoE backend computes the reference's function.
"""

from __future__ import annotations

import pytest
import torch

from core_model.config import ClipConfig, DecoderConfig, DeepseekOCRConfig, SamConfig
from core_model.engines.kv_cache import KVCache
from core_model.model import DeepseekOCRForCausalLM
from core_model.moe import MoE

transformers_ocr2 = pytest.importorskip("transformers.models.deepseek_ocr2.modeling_deepseek_ocr2")
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (  # noqa: E402
    DeepseekOcr2TextConfig,
)

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_decoder() -> DecoderConfig:
    return DecoderConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=8,
        n_shared_experts=2,
        num_experts_per_tok=3,
        max_position_embeddings=128,
    )


def build_pair(seed: int = 0):
    """Our model and the transformers text model + lm_head with the same random weights."""
    torch.manual_seed(seed)
    cfg = tiny_decoder()
    vision = {  # unused here: tiny, so building the model costs nothing
        "sam": SamConfig(width=8, layers=1, heads=1, global_attn_indexes=(0,),
                         downsample_channels=(8, 8), mlp_dim=8, out_chans=8),
        "clip": ClipConfig(width=8, layers=1, heads=1, mlp_dim=8),
        "projector_input_dim": 16,
    }
    ours = DeepseekOCRForCausalLM(DeepseekOCRConfig(decoder=cfg, **vision)).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2)
    theirs_cfg = DeepseekOcr2TextConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        moe_intermediate_size=cfg.moe_intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        n_routed_experts=cfg.n_routed_experts,
        n_shared_experts=cfg.n_shared_experts,
        num_experts_per_tok=cfg.num_experts_per_tok,
        routed_scaling_factor=cfg.routed_scaling_factor,
        topk_method="greedy",
        rms_norm_eps=cfg.rms_norm_eps,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        mlp_layer_types=["dense" if not cfg.is_moe_layer(i) else "sparse" for i in range(3)],
    )
    theirs_cfg._attn_implementation = "eager"
    theirs = transformers_ocr2.DeepseekOcr2TextModel(theirs_cfg).eval()
    head = torch.nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
    copy_weights(ours, theirs, head)
    return ours, theirs, head


@torch.no_grad()
def copy_weights(ours, theirs, head) -> None:
    src = ours.state_dict()
    dst = theirs.state_dict()
    for name in dst:
        if ".mlp.experts." in name:
            prefix, kind = name.rsplit(".", 1)  # layers.N.mlp.experts, gate_up_proj|down_proj
            E = ours.config.decoder.n_routed_experts
            if kind == "gate_up_proj":
                parts = [
                    torch.cat((src[f"model.{prefix}.{e}.gate_proj.weight"],
                               src[f"model.{prefix}.{e}.up_proj.weight"]))
                    for e in range(E)
                ]
            else:
                parts = [src[f"model.{prefix}.{e}.down_proj.weight"] for e in range(E)]
            dst[name].copy_(torch.stack(parts))
        else:
            dst[name].copy_(src[f"model.{name}"])
    head.weight.copy_(src["lm_head.weight"])


def test_names_follow_the_checkpoint():
    ours, _, _ = build_pair()
    names = set(ours.state_dict())
    assert "model.layers.0.mlp.gate_proj.weight" in names
    assert "model.layers.1.mlp.gate.weight" in names
    assert "model.layers.2.mlp.experts.7.down_proj.weight" in names
    assert "model.layers.1.mlp.shared_experts.up_proj.weight" in names
    assert {"model.image_newline", "model.view_seperator", "lm_head.weight"} <= names


@torch.no_grad()
def test_prefill_logits_match_transformers():
    ours, theirs, head = build_pair()
    ids = torch.randint(0, 320, (2, 17))
    positions = torch.arange(17).expand(2, 17)
    mine = ours.compute_logits(ours(ours.embed(ids), positions))
    ref = head(theirs(input_ids=ids).last_hidden_state)
    assert (mine - ref).abs().max().item() <= TOL


@torch.no_grad()
def test_incremental_decode_with_kv_cache_matches_transformers():
    ours, theirs, head = build_pair(seed=1)
    from transformers import DynamicCache

    B, T0, steps = 3, 9, 6
    ids = torch.randint(0, 320, (B, T0 + steps))
    cache = KVCache.contiguous(ours.config.decoder, B, 32, device="cpu", dtype=torch.float32)
    cache.bind(ours)
    slots = torch.arange(B)
    ctx = cache.prefill_context(slots, torch.full((B,), T0), T0)
    pos = torch.arange(T0).expand(B, T0)
    mine = [ours.compute_logits(ours(ours.embed(ids[:, :T0]), pos, ctx))[:, -1]]

    past = DynamicCache(config=theirs.config)
    out = theirs(input_ids=ids[:, :T0], cache=past, use_cache=True)
    ref = [head(out.last_hidden_state)[:, -1]]
    for t in range(T0, T0 + steps):
        positions = torch.full((B,), t)
        step = cache.decode_context(slots, positions, use_kernel=False, span=t + 1)
        hidden = ours(ours.embed(ids[:, t : t + 1]), positions[:, None], step)
        mine.append(ours.compute_logits(hidden)[:, -1])
        out = theirs(input_ids=ids[:, t : t + 1], cache=past, use_cache=True)
        ref.append(head(out.last_hidden_state)[:, -1])
    diff = (torch.stack(mine) - torch.stack(ref)).abs().max().item()
    assert diff <= TOL


@pytest.mark.parametrize("backend", ["gather", "dense", "loop"])
@torch.no_grad()
def test_packed_moe_backends_agree_with_reference_loop(backend):
    torch.manual_seed(3)
    moe = MoE(48, 24, num_experts=8, top_k=3, num_shared_experts=2)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(5, 7, 48)
    moe.backend = "loop"
    ref = moe(x)
    moe.pack()
    assert not hasattr(moe, "experts")  # unpacked weights freed
    moe.backend = backend
    assert (moe(x) - ref).abs().max().item() <= TOL


@torch.no_grad()
def test_router_is_softmax_greedy_topk_without_renormalisation():
    torch.manual_seed(4)
    moe = MoE(16, 8, num_experts=6, top_k=2, num_shared_experts=1)
    x = torch.randn(4, 16)
    weights, ids = moe.route(x)
    scores = torch.softmax(x @ moe.gate.weight.t(), dim=-1)
    expected = scores.topk(2, dim=-1)
    ids, order = ids.sort(dim=-1)  # the release asks for the top k unsorted
    want_ids, want_order = expected.indices.sort(dim=-1)
    assert torch.equal(ids, want_ids)
    assert torch.allclose(weights.gather(1, order), expected.values.gather(1, want_order))
    assert (weights.sum(-1) < 1).all()  # not renormalised
