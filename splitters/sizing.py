"""Length functions: how big a piece of text is, in characters or in tokens of a tokenizer.

A chunk size only means something together with the length function that measures it. This
module turns what a caller hands over (nothing, a name, a `tokenizers.Tokenizer`, a Hugging
Face tokenizer, a tiktoken encoding, a path to a `tokenizer.json`, or any callable) into one
`LengthFunction`. It knows nothing about documents or chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

LengthFunction = Callable[[str], int]


def characters(text: str) -> int:
    """The length of `text` in Unicode code points (the default measure)."""
    return len(text)


def token_counter(tokenizer: Any) -> LengthFunction:
    """A length function counting the tokens `tokenizer` makes of a text, without specials.

    Args:
        tokenizer: a `tokenizers.Tokenizer`, a Hugging Face `PreTrainedTokenizer(Fast)`, a
            tiktoken `Encoding`, or any object with `encode(text)` returning token ids (or an
            object with `.ids`, as `tokenizers` returns).

    Returns:
        A function `text -> number of tokens`.

    Raises:
        TypeError: `tokenizer` has no `encode` method.
    """
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        raise TypeError(f"not a tokenizer (no encode method): {type(tokenizer).__name__}")
    module = type(tokenizer).__module__
    if module.startswith("tokenizers"):
        return lambda text: len(encode(text, add_special_tokens=False).ids)
    if module.startswith("transformers"):
        return lambda text: len(encode(text, add_special_tokens=False))

    def count(text: str) -> int:
        encoded = encode(text)
        return len(getattr(encoded, "ids", encoded))

    return count


def resolve_length(length: Any = None) -> LengthFunction:
    """Turn a length specification into a `LengthFunction`.

    Args:
        length: None or "characters"/"chars" for characters; a path to a `tokenizer.json`
            (str or Path) to count tokens of that tokenizer; a tokenizer object (see
            `token_counter`); or a callable `text -> int`, used as is.

    Returns:
        The length function.

    Raises:
        ValueError: a string that is neither a known name nor an existing file.
        TypeError: an object that is neither callable nor a tokenizer.
    """
    if length is None or length in ("characters", "chars"):
        return characters
    if isinstance(length, (str, Path)):
        path = Path(length)
        if not path.is_file():
            raise ValueError(
                f"length {str(length)!r}: expected 'characters' or a tokenizer.json file"
            )
        from tokenizers import Tokenizer

        return token_counter(Tokenizer.from_file(str(path)))
    if hasattr(length, "encode"):
        return token_counter(length)
    if callable(length):
        return length
    raise TypeError(f"length must be None, a name, a tokenizer or a callable, not {length!r}")
