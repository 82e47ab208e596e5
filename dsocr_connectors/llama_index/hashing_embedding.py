"""`HashingEmbedding`: the offline feature-hashing embedding as a LlamaIndex embed model.

For demos and tests only: deterministic, no download, no model; it matches words and word
pieces, not meaning (see `dsocr_connectors.hashing`).
"""

from __future__ import annotations

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field

from dsocr_connectors.hashing import hashing_vector


class HashingEmbedding(BaseEmbedding):
    """Character n-gram hashing embedding (demo/offline; not a semantic model).

    Attributes:
        dim: the vector size.
    """

    dim: int = Field(default=512, gt=0, description="vector size")
    model_name: str = "dsocr-hashing"

    @classmethod
    def class_name(cls) -> str:
        return "HashingEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return hashing_vector(query, dim=self.dim)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return hashing_vector(query, dim=self.dim)

    def _get_text_embedding(self, text: str) -> list[float]:
        return hashing_vector(text, dim=self.dim)
