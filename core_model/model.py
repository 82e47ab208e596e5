"""DeepSeek-OCR and DeepSeek-OCR-2 assembled: a vision encoder and the DeepSeek-V2 MoE decoder.

`DeepseekOCRForCausalLM(config)` builds either family from its configuration: for a
`DeepseekOCRConfig` the DeepEncoder (SAM + CLIP + projector, `DeepseekOCRModel` below), for a
`DeepseekOCR2Config` DeepEncoder V2 (SAM + Qwen2 encoder + projector, `core_model.model_ocr2`),
with the same decoder (`core_model.decoder`) and untied `lm_head`. Attribute names equal each
released checkpoint's (`model.sam_model.*`, `model.vision_model.*` or `model.qwen2_model.*`,
`model.projector.*`, `model.view_seperator` (sic), `model.embed_tokens.*`, `model.layers.N.*`,
`model.norm.*`, `lm_head.*`), so a state dict loads with no renaming.

The interface an engine drives is the same for both families: `prepare_image` (page -> the
family's views for a mode), `encode_images`, `embed`, `forward(inputs_embeds, positions, ctx)`
(final hidden states), `compute_logits` (`lm_head` on the rows the caller wants), `pack`,
`set_moe_backend`.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from core_model.attention import AttentionContext
from core_model.clip import ClipVisionTower
from core_model.config import DeepseekOCR2Config, DeepseekOCRConfig, ModelConfig
from core_model.decoder import DecoderModel
from core_model.deep_encoder import encode_images, encode_views
from core_model.encoder_graphs import EncoderGraphs
from core_model.image_input import ImageInput
from core_model.model_ocr2 import DeepseekOCR2Model
from core_model.modes import Mode, get_mode
from core_model.moe import MoE
from core_model.preprocess import WHITE, prepare_image
from core_model.projector import Projector
from core_model.sam import SamEncoder


class DeepseekOCRModel(DecoderModel):
    """DeepSeek-OCR's inner model: the DeepEncoder beside the decoder."""

    def __init__(self, config: DeepseekOCRConfig) -> None:
        super().__init__(config.decoder)
        cfg = config.decoder
        self.config = config
        self.sam_model = SamEncoder(config.sam)
        self.vision_model = ClipVisionTower(config.clip)
        self.projector = Projector(config.projector_input_dim, cfg.hidden_size)
        self.image_newline = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.view_seperator = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.encoder_graphs: EncoderGraphs | None = None  # `use_encoder_graphs`

    def encode_images(self, images: list, *, max_views_per_call: int | None = 16) -> list[torch.Tensor]:
        """Vision tokens (N_i, hidden) for each `ImageInput` (see `deep_encoder`)."""
        return encode_images(
            self.sam_model, self.vision_model, self.projector, self.image_newline,
            self.view_seperator, images, max_views_per_call=max_views_per_call,
            view_encoder=self.encoder_graphs,
        )

    def use_encoder_graphs(self, view_sizes: tuple[int, ...] = ()) -> EncoderGraphs:
        """Replay small DeepEncoder calls as CUDA graphs (`encoder_graphs.py`), those of
        square views of `view_sizes` pixels captured now (others on first use)."""
        if self.encoder_graphs is None:
            self.encoder_graphs = EncoderGraphs(
                lambda pixels: encode_views(self.sam_model, self.vision_model, self.projector, pixels))
        weight = next(self.sam_model.parameters())  # the views' device and dtype
        for size in view_sizes:
            self.encoder_graphs.capture((3, size, size), weight.dtype, weight.device)
        return self.encoder_graphs


class DeepseekOCRForCausalLM(nn.Module):
    """Either family's model (chosen by the config's type) plus its untied `lm_head`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if isinstance(config, DeepseekOCR2Config):
            self.model: DeepseekOCRModel | DeepseekOCR2Model = DeepseekOCR2Model(config)
        else:
            self.model = DeepseekOCRModel(config)
        self.lm_head = nn.Linear(config.decoder.hidden_size, config.decoder.vocab_size, bias=False)

    @property
    def family(self) -> str:
        """"deepseek-ocr" or "deepseek-ocr-2" (`core_model.config.FAMILIES`)."""
        return self.config.family

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

    def prepare_image(
        self,
        image: Image.Image,
        mode: str | Mode = "gundam",
        *,
        min_tiles: int = 2,
        max_tiles: int = 6,
        alpha_background: tuple[int, int, int] | None = WHITE,
        normalize: bool = True,
    ) -> ImageInput:
        """A page as this family's views for `mode` (see `core_model.modes`, `preprocess`);
        `normalize=False` keeps uint8 pixels for the encoder to normalise on its device.

        Raises:
            ValueError: For a mode the family does not define (DeepSeek-OCR-2: small, base
                and gundam only).
        """
        return prepare_image(
            image, get_mode(mode, self.family), min_tiles=min_tiles, max_tiles=max_tiles,
            alpha_background=alpha_background, normalize=normalize,
        )

    def encode_images(self, images: list, *, max_views_per_call: int | None = 16) -> list[torch.Tensor]:
        """Vision tokens (N_i, hidden) for each `ImageInput`, through the family's encoder.

        Views of one size are encoded together, at most `max_views_per_call` per call: SAM's
        global-attention blocks hold a (views, heads, 4096, 4096) bias at 1024 px, so larger
        calls cost memory and, measured, speed too.
        """
        return self.model.encode_images(images, max_views_per_call=max_views_per_call)

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
