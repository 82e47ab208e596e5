"""The linear projector from DeepEncoder features to the decoder's embedding width.

The released `MlpProjector` with `projector_type="linear"`: one `nn.Linear` named `layers`
(checkpoint names `model.projector.layers.weight` and `.bias`), mapping the concatenated CLIP
and SAM features (1024 + 1024 = 2048) to the decoder's hidden size (1280).
"""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """features (..., input_dim) -> vision embeddings (..., output_dim)."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layers = nn.Linear(input_dim, output_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
