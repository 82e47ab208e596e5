"""The model configuration, read from a released `config.json`, for both model families.

DeepSeek-OCR and DeepSeek-OCR-2 share the decoder (DeepSeek-V2 MoE) and SAM; OCR-2 replaces
CLIP with a Qwen2-0.5B "decoder as encoder" (DeepEncoder V2). `config_from_dict` tells them
apart (`architectures`, else `vision_config`) and returns a `DeepseekOCRConfig` or a
`DeepseekOCR2Config`; both have `family`, `sam`, `decoder`, `projector_input_dim` and
`image_token_id`.

The released file names the decoder sizes at top level (and again under `language_config`)
and the vision sizes under `vision_config.width`. Sizes the release hard-codes in its Python
(SAM's MLP width, window size, neck channels, patch size; CLIP's MLP width; every Qwen2 size
but its width) have the released values as defaults here and may be overridden by extra keys,
so tests can build tiny models.
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


DEEPSEEK_OCR = "deepseek-ocr"
DEEPSEEK_OCR_2 = "deepseek-ocr-2"
FAMILIES = (DEEPSEEK_OCR, DEEPSEEK_OCR_2)


@dataclass
class Qwen2EncoderConfig:
    """DeepEncoder V2's Qwen2 stack (released `build_qwen2_decoder_as_encoder` defaults)."""

    dim: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    mlp_dim: int = 4864
    rope_theta: float = 1000000.0
    rms_norm_eps: float = 1e-6
    query_sizes: tuple[int, ...] = (768, 1024)  # views with learned queries: query_768, query_1024

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass
class DeepseekOCRConfig:
    family = DEEPSEEK_OCR
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


@dataclass
class DeepseekOCR2Config:
    """DeepSeek-OCR-2: SAM + Qwen2 encoder + linear projector, the same decoder.

    The released `deepencoderv2.py` hard-codes SAM's last compressor convolution (`net_3`)
    to 896 output channels, the Qwen2 width, whatever `sam_vit_b.downsample_channels` says
    (the released config.json keeps DeepSeek-OCR's [512, 1024]); so here the last channel
    count is always the encoder's width.
    """

    family = DEEPSEEK_OCR_2
    sam: SamConfig = field(default_factory=lambda: SamConfig(downsample_channels=(512, 896)))
    encoder: Qwen2EncoderConfig = field(default_factory=Qwen2EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    projector_input_dim: int = 896
    image_token_id: int = 128815

    def __post_init__(self) -> None:
        first = self.sam.downsample_channels[0]
        self.sam.downsample_channels = (first, self.encoder.dim)
        if self.projector_input_dim != self.encoder.dim:
            raise ValueError(
                f"projector input_dim {self.projector_input_dim} must equal the Qwen2 encoder "
                f"width {self.encoder.dim}"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeepseekOCR2Config:
        vision = raw.get("vision_config", {}).get("width", {})
        sam = _pick(SamConfig, vision.get("sam_vit_b", {}))
        encoder = _pick(Qwen2EncoderConfig, vision.get("qwen2-0-5b", {}))
        decoder = _pick(DecoderConfig, {**raw.get("language_config", {}), **raw})
        projector = raw.get("projector_config", {})
        return cls(
            sam=sam,
            encoder=encoder,
            decoder=decoder,
            projector_input_dim=projector.get("input_dim", encoder.dim),
            image_token_id=raw.get("image_token_id", 128815),
        )


def model_family(raw: dict[str, Any]) -> str:
    """`DEEPSEEK_OCR` or `DEEPSEEK_OCR_2` for a released config.json's contents.

    Raises:
        ValueError: For transformers' converted `deepseek_ocr2` layout (other parameter
            names) and for architectures of neither family.
    """
    if raw.get("model_type") == "deepseek_ocr2":
        raise ValueError(
            "this is transformers' converted DeepSeek-OCR-2 layout (model_type 'deepseek_ocr2', "
            "other parameter names); use the released checkpoint deepseek-ai/DeepSeek-OCR-2"
        )
    architectures = raw.get("architectures") or []
    if "DeepseekOCR2ForCausalLM" in architectures:
        return DEEPSEEK_OCR_2
    if "DeepseekOCRForCausalLM" in architectures:
        return DEEPSEEK_OCR
    vision = raw.get("vision_config", {})
    if vision.get("model_name") == "deepencoderv2" or "qwen2-0-5b" in vision.get("width", {}):
        return DEEPSEEK_OCR_2
    if architectures:
        raise ValueError(
            f"unsupported architectures {architectures}; expected DeepseekOCRForCausalLM or "
            "DeepseekOCR2ForCausalLM"
        )
    return DEEPSEEK_OCR


ModelConfig = DeepseekOCRConfig | DeepseekOCR2Config


def config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    """The configuration of either family from a released config.json's contents."""
    if model_family(raw) == DEEPSEEK_OCR_2:
        return DeepseekOCR2Config.from_dict(raw)
    return DeepseekOCRConfig.from_dict(raw)


def _pick(kind: type, raw: dict[str, Any]) -> Any:
    """Build dataclass `kind` from the keys of `raw` it knows; lists become tuples."""
    known = {f.name for f in fields(kind)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return kind(**values)
