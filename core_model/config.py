"""The model configuration, read from a released `config.json`.

The released file names the decoder sizes at top level (and again under `language_config`)
and the vision sizes under `vision_config.width`. Sizes the release hard-codes in its Python
(SAM's MLP width, window size, neck channels, patch size; CLIP's MLP width) have the released
values as defaults here and may be overridden by extra keys, so tests can build tiny models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class SamConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    downsample_channels: tuple[int, ...] = (512, 1024)  # net_2, net_3 output channels
    mlp_dim: int = 3072
    window_size: int = 14
    out_chans: int = 256  # neck channels
    image_size: int = 1024  # the grid pos_embed is learned for: image_size / patch_size
    patch_size: int = 16


@dataclass
class ClipConfig:
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_dim: int = 4096
    image_size: int = 224
    patch_size: int = 14
    layer_norm_eps: float = 1e-5

    @property
    def num_positions(self) -> int:  # class token + the (224/14)^2 grid
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass
class DecoderConfig:
    vocab_size: int = 129280
    hidden_size: int = 1280
    intermediate_size: int = 6848  # dense MLP of the first layers
    moe_intermediate_size: int = 896
    num_hidden_layers: int = 12
    num_attention_heads: int = 10
    num_key_value_heads: int = 10
    n_routed_experts: int = 64
    n_shared_experts: int = 2
    num_experts_per_tok: int = 6
    first_k_dense_replace: int = 1
    moe_layer_freq: int = 1
    norm_topk_prob: bool = False
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    topk_method: str = "greedy"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 8192
    bos_token_id: int = 0
    eos_token_id: int = 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def is_moe_layer(self, index: int) -> bool:
        return index >= self.first_k_dense_replace and index % self.moe_layer_freq == 0


@dataclass
class DeepseekOCRConfig:
    sam: SamConfig = field(default_factory=SamConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    projector_input_dim: int = 2048  # CLIP width + SAM's last downsample channels
    image_token_id: int = 128815

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeepseekOCRConfig:
        vision = raw.get("vision_config", {}).get("width", {})
        sam = _pick(SamConfig, vision.get("sam_vit_b", {}))
        clip = _pick(ClipConfig, vision.get("clip-l-14-224", {}))
        decoder = _pick(DecoderConfig, {**raw.get("language_config", {}), **raw})
        projector = raw.get("projector_config", {})
        return cls(
            sam=sam,
            clip=clip,
            decoder=decoder,
            projector_input_dim=projector.get("input_dim", clip.width + sam.downsample_channels[-1]),
            image_token_id=raw.get("image_token_id", 128815),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> DeepseekOCRConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _pick(kind: type, raw: dict[str, Any]) -> Any:
    """Build dataclass `kind` from the keys of `raw` it knows; lists become tuples."""
    known = {f.name for f in fields(kind)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return kind(**values)
