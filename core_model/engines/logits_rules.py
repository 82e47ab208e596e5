"""The per-step rules the engine applies on tensors, behind two small protocols.

`LogitsRule.apply(logits (B, V), tokens (B, L), lengths (B,))` edits logits in place (the
no-repeat n-gram rule of the released decoding); `StopRule.update(tokens, lengths)` returns a
bool (B,) tensor, True where a sequence must stop (loop detection -> "repetition"). `tokens`
holds each sequence's output tokens so far, `lengths` how many are valid. The default rules
come from `core_model.engines.ngram` and `core_model.engines.loop_detect` when installed.
"""

from __future__ import annotations

from typing import Protocol

import torch


class LogitsRule(Protocol):
    def apply(self, logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> None: ...


class StopRule(Protocol):
    def update(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


def default_ngram_rule(n: int, window: int | None, whitelist_ids: tuple[int, ...]) -> LogitsRule | None:
    """The released no-repeat n-gram rule, or None where it is not installed or n <= 0."""
    if n <= 0:
        return None
    try:
        from core_model.engines.ngram import NoRepeatNGram
    except ImportError:
        return None
    return NoRepeatNGram(n, window=window, whitelist_ids=whitelist_ids)


def default_loop_detector() -> StopRule | None:
    try:
        from core_model.engines.loop_detect import LoopDetector
    except ImportError:
        return None
    return LoopDetector()
