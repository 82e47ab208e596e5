"""DeepSeek-OCR assembled: DeepEncoder (SAM + CLIP + projector) and the DeepSeek-V2 MoE decoder.

Attribute names equal the released checkpoint's (`model.sam_model.*`, `model.vision_model.*`,
`model.projector.*`, `model.image_newline`, `model.view_seperator` (sic),
`model.embed_tokens.*`, `model.layers.N.*`, `model.norm.*`, `lm_head.*`), so a state dict
loads with no renaming. The vision modules live in `core_model.sam`, `core_model.clip`,
`core_model.projector` and `core_model.deep_encoder`.

The hot path takes tensors only: `forward(inputs_embeds, positions, ctx)` returns the final
hidden states, `compute_logits` applies `lm_head` to the rows the caller wants.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.attention import AttentionContext
from core_model.clip import ClipVisionTower
from core_model.config import DecoderConfig, DeepseekOCRConfig
from core_model.decoder_layer import DecoderLayer
from core_model.deep_encoder import encode_images
from core_model.moe import MoE
from core_model.projector import Projector
from core_model.rmsnorm import RMSNorm
from core_model.rotary import RotaryEmbedding
from core_model.sam import SamEncoder


def _check_supported(cfg: DecoderConfig) -> None:
    if cfg.scoring_func != "softmax" or cfg.topk_method != "greedy":
        raise ValueError(
            f"unsupported router: scoring_func={cfg.scoring_func!r}, topk_method="
            f"{cfg.topk_method!r}; DeepSeek-OCR uses 'softmax' and 'greedy'"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(
            f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
            f"{cfg.num_attention_heads}"
        )


class DeepseekOCRModel(nn.Module):
    def __init__(self, config: DeepseekOCRConfig) -> None:
        super().__init__()
        cfg = config.decoder
        _check_supported(cfg)
        self.config = config
        self.sam_model = SamEncoder(config.sam)
        self.vision_model = ClipVisionTower(config.clip)
        self.projector = Projector(config.projector_input_dim, cfg.hidden_size)
        self.image_newline = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.view_seperator = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        positions: torch.Tensor,
        ctx: AttentionContext | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, hidden) for embeddings (B, T, hidden) at positions (B, T)."""
        cos, sin = self.rotary(positions, inputs_embeds.dtype)  # (B, T, D)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, ctx)
        return self.norm(x)


class DeepseekOCRForCausalLM(nn.Module):
    """The model plus its untied `lm_head`."""

    def __init__(self, config: DeepseekOCRConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DeepseekOCRModel(config)
        self.lm_head = nn.Linear(config.decoder.hidden_size, config.decoder.vocab_size, bias=False)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        positions: torch.Tensor,
        ctx: AttentionContext | None = None,
    ) -> torch.Tensor:
        return self.model(inputs_embeds, positions, ctx)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def embed(
        self,
        input_ids: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        vision_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings (..., hidden), with `vision_embeds` (M, hidden) written, in order,
        at the M positions where `image_mask` is True."""
        embeds = self.model.embed_tokens(input_ids)
        if image_mask is not None and vision_embeds is not None:
            num_slots = int(image_mask.sum())
            if num_slots != vision_embeds.shape[0]:
                raise ValueError(
                    f"prompt has {num_slots} image positions but the encoder gave "
                    f"{vision_embeds.shape[0]} vision tokens"
                )
            embeds[image_mask] = vision_embeds.to(embeds.dtype)
        return embeds

    def encode_images(self, images: list, *, max_views_per_call: int | None = 16) -> list[torch.Tensor]:
        """Vision tokens (N_i, hidden) for each `ImageInput`, through the DeepEncoder.

        Views of one size are encoded together, at most `max_views_per_call` per call: SAM's
        global-attention blocks hold a (views, heads, 4096, 4096) bias at 1024 px, so larger
        calls cost memory and, measured, speed too.
        """
        m = self.model
        return encode_images(
            m.sam_model, m.vision_model, m.projector, m.image_newline, m.view_seperator, images,
            max_views_per_call=max_views_per_call,
        )

    def pack(self) -> None:
        """Stack every MoE layer's expert weights for the fast backends (after loading)."""
        for layer in self.model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.pack()

    def set_moe_backend(self, backend: str) -> None:
        for layer in self.model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.backend = backend

    def set_moe_numerics(self, numerics: str) -> None:
        """"release" (default: bf16 gate logits as under the release's autocast) or "fp32"
        (gate logits in float32, as transformers' `deepseek_ocr2`); see `core_model.moe`."""
        for layer in self.model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.numerics = numerics
