"""A deterministic, offline text embedding by feature hashing (for demos and tests).

Words and character n-grams of each word are hashed (BLAKE2b, so the same text gives the
same vector in every process) into a fixed number of signed buckets, weighted
sub-linearly, and L2-normalised. Texts sharing words and word pieces get a high cosine
similarity; there is no semantics beyond that. It needs no download and no model, which is
what a runnable RAG example and a test suite need; use a real embedding model for real
retrieval. The framework wrappers live in `dsocr_connectors.llama_index.hashing_embedding`
and `dsocr_connectors.langchain.hashing_embedding`.
"""

from __future__ import annotations

import math
import re
from hashlib import blake2b

_WORD = re.compile(r"\w+", re.UNICODE)


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = int.from_bytes(blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return digest % dim, (1.0 if digest >> 63 else -1.0)


def hashing_vector(text: str, *, dim: int = 512, ngrams: tuple[int, int] = (3, 5)) -> list[float]:
    """The embedding of `text`: a unit vector of `dim` floats (all zeros for no words).

    Args:
        text: any text.
        dim: the vector size.
        ngrams: the smallest and largest character n-gram taken inside each word
            (the word is padded with one space on each side).

    Returns:
        The vector, as a list.
    """
    counts: dict[str, float] = {}
    for word in _WORD.findall(text.lower()):
        counts["w:" + word] = counts.get("w:" + word, 0.0) + 1.0
        padded = f" {word} "
        for n in range(ngrams[0], ngrams[1] + 1):
            for i in range(max(1, len(padded) - n + 1)):
                gram = "g:" + padded[i:i + n]
                counts[gram] = counts.get(gram, 0.0) + 0.5
    vector = [0.0] * dim
    for feature, count in counts.items():
        index, sign = _bucket(feature, dim)
        vector[index] += sign * math.log1p(count)
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
