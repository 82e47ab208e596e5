"""The DeepSeek-OCR tokenizer: a thin wrapper over `tokenizers.Tokenizer`.

Reads the released `tokenizer.json` (byte-level BPE, 128,000 base tokens plus specials)
with the `tokenizers` library; no `transformers` needed. Encoding never adds special tokens
(the release calls `encode(text, add_special_tokens=False)` and puts BOS in itself);
decoding keeps special tokens as text (`<|ref|>`, `<td>`...), because the output grammar
is made of them. Knows nothing about images or prompts; see `prompt.py`.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HfTokenizer
from tokenizers.decoders import DecodeStream

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
PAD_TOKEN = "<｜▁pad▁｜>"
IMAGE_TOKEN = "<image>"
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    """Encode text to ids and decode ids to text, with the special ids at hand.

    Attributes:
        bos_id: Id of the begin-of-sentence token (0 in the release).
        eos_id: Id of the end-of-sentence token (1).
        pad_id: Id of the padding token (2).
        image_id: Id of the `<image>` placeholder (128815).
    """

    def __init__(self, inner: _HfTokenizer, *, source: str = "<memory>") -> None:
        self.inner = inner
        self.source = source
        self.bos_id = self._require(BOS_TOKEN)
        self.eos_id = self._require(EOS_TOKEN)
        self.pad_id = self._require(PAD_TOKEN)
        self.image_id = self._require(IMAGE_TOKEN)
        self._vocab_size = inner.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Read a `tokenizer.json` file.

        Raises:
            FileNotFoundError: When the file does not exist.
            ValueError: When it is not a tokenizer the `tokenizers` library can read, or it
                lacks one of the special tokens.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            inner = _HfTokenizer.from_file(str(path))
        except Exception as exc:  # the library raises a bare Exception for bad JSON
            raise ValueError(f"{path} is not a readable tokenizer.json: {exc}") from exc
        return cls(inner, source=str(path))

    def _require(self, token: str) -> int:
        token_id = self.inner.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer {self.source} has no {token!r} token")
        return token_id

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer knows, special tokens included."""
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without BOS/EOS; special tokens written in the text are recognised."""
        return self.inner.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, special tokens kept as text.

        Ids the tokenizer does not know (the model's 129,280 outputs exceed the tokenizer's
        vocabulary) are not dropped: each shows as `<|unk:ID|>`.
        """
        ids = list(ids)
        size = self.vocab_size
        if all(0 <= i < size for i in ids):
            return self.inner.decode(ids, skip_special_tokens=False)
        pieces, run = [], []
        for token_id in ids:
            if 0 <= token_id < size:
                run.append(token_id)
                continue
            pieces.append(self.inner.decode(run, skip_special_tokens=False))
            pieces.append(unknown_marker(token_id))
            run = []
        pieces.append(self.inner.decode(run, skip_special_tokens=False))
        return "".join(pieces)

    def stream(self) -> StreamDecoder:
        """A decoder for ids that arrive one at a time (see `StreamDecoder`)."""
        return StreamDecoder(self)

    def token_to_id(self, token: str) -> int | None:
        """Id of one token string, or None."""
        return self.inner.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Token string of one id, or None."""
        return self.inner.id_to_token(token_id)

    def __repr__(self) -> str:
        return f"Tokenizer({self.source!r}, vocab_size={self.vocab_size})"


def unknown_marker(token_id: int) -> str:
    """How `decode` shows an id the tokenizer does not know."""
    return f"<|unk:{token_id}|>"


class StreamDecoder:
    """Incremental decoding: `step(id)` returns the text that id completes.

    A character split over several byte-level tokens comes out whole, with the token that
    completes it; until then `step` returns "". Joined, the steps equal `decode(ids)`.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=False)

    def step(self, token_id: int) -> str:
        if not 0 <= token_id < self.tokenizer.vocab_size:
            return unknown_marker(token_id)
        return self._stream.step(self.tokenizer.inner, token_id) or ""


def load_tokenizer(path_or_dir: str | Path) -> Tokenizer:
    """Load `tokenizer.json` from a file path or a checkpoint directory.

    Raises:
        FileNotFoundError: When there is no `tokenizer.json` there; the message names the path.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    return Tokenizer.from_file(path)
