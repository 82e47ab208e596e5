"""`HashingEmbeddings`: the offline feature-hashing embedding as LangChain `Embeddings`.

For demos and tests only: deterministic, no download, no model; it matches words and word
pieces, not meaning (see `dsocr_connectors.hashing`).
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from dsocr_connectors.hashing import hashing_vector


class HashingEmbeddings(Embeddings):
    """Character n-gram hashing embeddings (demo/offline; not a semantic model).

    Args:
        dim: the vector size.
    """

    def __init__(self, *, dim: int = 512) -> None:
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return [hashing_vector(t, dim=self.dim) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """The vector of a query (same space as the documents)."""
        return hashing_vector(text, dim=self.dim)
