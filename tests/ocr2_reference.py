"""transformers' `deepseek_ocr2` as the reference for our DeepSeek-OCR-2: the same random weights.

`reference_model(ours)` builds `DeepseekOcr2ForConditionalGeneration` at our model's sizes
(eager attention everywhere) and copies our parameters across, renaming the released names to
transformers' (stacking the routed experts as its `experts.gate_up_proj` / `down_proj`).
`reference_inputs` turns our `ImageInput`s into its `pixel_values`, `pixel_values_local` and
`num_local_patches`.
"""

from __future__ import annotations

import torch
from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2Config
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
    DeepseekOcr2ForConditionalGeneration,
)

from core_model.config import DeepseekOCR2Config
from core_model.image_input import ImageInput

_SAM_RENAMES = [
    ("patch_embed.proj", "patch_embed.projection"),
    ("blocks.", "layers."),
    (".norm1", ".layer_norm1"),
    (".norm2", ".layer_norm2"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("net_2", "proj.conv1"),
    ("net_3", "proj.conv2"),
]


def reference_config(cfg: DeepseekOCR2Config) -> DeepseekOcr2Config:
    sam, enc, dec = cfg.sam, cfg.encoder, cfg.decoder
    config = DeepseekOcr2Config(
        vision_config={
            "sam_config": dict(
                hidden_size=sam.width, output_channels=sam.out_chans,
                num_hidden_layers=sam.layers, num_attention_heads=sam.heads,
                global_attn_indexes=list(sam.global_attn_indexes), mlp_dim=sam.mlp_dim,
                downsample_channels=list(sam.downsample_channels), window_size=sam.window_size,
                image_size=sam.image_size, patch_size=sam.patch_size,
            ),
            "encoder_config": dict(
                hidden_size=enc.dim, intermediate_size=enc.mlp_dim, num_hidden_layers=enc.layers,
                num_attention_heads=enc.heads, num_key_value_heads=enc.kv_heads,
                rms_norm_eps=enc.rms_norm_eps, vocab_size=8,
                rope_parameters={"rope_type": "default", "rope_theta": enc.rope_theta},
            ),
        },
        text_config=dict(
            vocab_size=dec.vocab_size, hidden_size=dec.hidden_size,
            intermediate_size=dec.intermediate_size,
            moe_intermediate_size=dec.moe_intermediate_size,
            num_hidden_layers=dec.num_hidden_layers, num_attention_heads=dec.num_attention_heads,
            num_key_value_heads=dec.num_key_value_heads, n_routed_experts=dec.n_routed_experts,
            n_shared_experts=dec.n_shared_experts, num_experts_per_tok=dec.num_experts_per_tok,
            routed_scaling_factor=dec.routed_scaling_factor, topk_method="greedy",
            rms_norm_eps=dec.rms_norm_eps, max_position_embeddings=dec.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": dec.rope_theta},
            mlp_layer_types=[
                "sparse" if dec.is_moe_layer(i) else "dense" for i in range(dec.num_hidden_layers)
            ],
            bos_token_id=dec.bos_token_id, eos_token_id=dec.eos_token_id,
        ),
        image_token_id=cfg.image_token_id,
    )
    for sub in (config, config.vision_config, config.vision_config.sam_config,
                config.vision_config.encoder_config, config.text_config):
        sub._attn_implementation = "eager"
    return config


def to_transformers_sam_name(name: str) -> str:
    """Checkpoint-style SAM name -> transformers' deepseek_ocr2 SAM name (both families)."""
    for old, new in _SAM_RENAMES:
        name = name.replace(old, new)
    return name


def reference_name(name: str) -> str:
    """A released DeepSeek-OCR-2 parameter name -> transformers' name for it."""
    if name.startswith("model.sam_model."):
        rest = name.removeprefix("model.sam_model.")
        return "model.vision_tower.sam_encoder." + to_transformers_sam_name(rest)
    if name.startswith("model.qwen2_model.model.model."):
        return "model.vision_tower.vision_encoder." + name.removeprefix("model.qwen2_model.model.model.")
    if name.startswith("model.qwen2_model.query_"):
        size = name.split("query_")[1].split(".")[0]
        return f"model.vision_tower.query_{size}_resolution.weight"
    if name.startswith("model.projector.layers."):
        return "model.multi_modal_projector." + name.removeprefix("model.projector.layers.")
    if name == "model.view_seperator":
        return "model.view_separator"
    if name.startswith("model."):
        return "model.language_model." + name.removeprefix("model.")
    return name


@torch.no_grad()
def reference_model(ours: torch.nn.Module) -> DeepseekOcr2ForConditionalGeneration:
    """transformers' model at our sizes, holding our weights (fp32, eval)."""
    reference = DeepseekOcr2ForConditionalGeneration(reference_config(ours.config)).eval()
    target = reference.state_dict()
    source = ours.state_dict()
    experts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for name, value in source.items():
        if ".mlp.experts." in name:  # model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight
            head, rest = name.split(".mlp.experts.")
            index, kind = rest.split(".")[:2]
            experts.setdefault(head, {}).setdefault(int(index), {})[kind] = value
            continue
        target[reference_name(name)].copy_(value)
    for head, by_index in experts.items():
        prefix = reference_name(head) + ".mlp.experts."
        ordered = [by_index[i] for i in range(len(by_index))]
        gate_up = [torch.cat((e["gate_proj"], e["up_proj"])) for e in ordered]
        target[prefix + "gate_up_proj"].copy_(torch.stack(gate_up))
        target[prefix + "down_proj"].copy_(torch.stack([e["down_proj"] for e in ordered]))
    reference.load_state_dict(target, strict=True)
    return reference


def reference_inputs(images: list[ImageInput]) -> dict:
    """Our prepared images as transformers' model inputs."""
    tiles = [image.tiles for image in images if image.tiles is not None]
    return {
        "pixel_values": torch.stack([image.global_view for image in images]),
        "pixel_values_local": torch.cat(tiles) if tiles else None,
        "num_local_patches": [0 if im.tiles is None else len(im.tiles) for im in images],
    }
