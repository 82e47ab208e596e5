"""DeepSeek-OCR-2's inner model: DeepEncoder V2 (SAM + Qwen2 encoder + projector) and the decoder.

Attribute names equal the released checkpoint's (`model.sam_model.*`, `model.qwen2_model.*`,
`model.projector.*`, `model.view_seperator` (sic), then the decoder's `model.embed_tokens.*`,
`model.layers.N.*`, `model.norm.*`), so a state dict loads with no renaming. The outer
`DeepseekOCRForCausalLM` (core_model.model) holds it for a `DeepseekOCR2Config`.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.config import DeepseekOCR2Config
from core_model.decoder import DecoderModel
from core_model.deep_encoder_v2 import encode_images, query_counts
from core_model.projector import Projector
from core_model.qwen2_encoder import Qwen2Encoder
from core_model.sam import SamEncoder


class DeepseekOCR2Model(DecoderModel):
    def __init__(self, config: DeepseekOCR2Config) -> None:
        super().__init__(config.decoder)
        self.config = config
        self.sam_model = SamEncoder(config.sam)
        self.qwen2_model = Qwen2Encoder(config.encoder, query_counts(config))
        self.projector = Projector(config.projector_input_dim, config.decoder.hidden_size)
        self.view_seperator = nn.Parameter(torch.zeros(config.decoder.hidden_size))

    def encode_images(self, images: list, *, max_views_per_call: int | None = 16) -> list[torch.Tensor]:
        """Vision tokens (N_i, hidden) for each `ImageInput` (see `deep_encoder_v2`)."""
        return encode_images(
            self.sam_model, self.qwen2_model, self.projector, self.view_seperator, images,
            max_views_per_call=max_views_per_call,
        )
