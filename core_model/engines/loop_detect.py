"""Repetition-loop detection while decoding, as batched tensor ops.

Some pages never emit EOS: the decoder repeats a chunk (a word, a table row, a block with
stepping coordinates, a counter "331 0 0 0 ...") until the token limit, which costs up to
8192 decode steps per page. The no-repeat n-gram rule does not stop these loops: it only
forbids *exact* n-grams, and real loops vary a digit or a coordinate per repetition.

The test is a tolerant periodicity check on the tail of the generated ids: for a period p,
count the positions j of the last `min_span_tokens` ids whose id equals the id p positions
earlier. A row is looping when, for some p in [min_period, max_period], that fraction is at
least `min_match` (exact repetition is 1.0; a block of 18 ids with two changing coordinates
is 0.89). The span must hold at least `min_repeats` periods. The defaults were calibrated on
real outputs (tests/test_loop_detect.py, docs/engines.md): every looping page of the corpus
is caught and no clean page is, including a notebook page with 30 legitimately identical
rows (its repetition covers fewer than `min_span_tokens` tokens).

The work is max_period (B, span) comparisons. `update` is meant to be called every decode
step and does the work on one call in `check_every` (a loop persists, so nothing is lost but
a few steps). The buffer may hold generated ids only, or prompt + generated ids with
`prompt_lengths` telling where generation starts.
"""

from __future__ import annotations

import torch


class LoopDetector:
    """Flags sequences whose generated tail is a (near-)repetition loop.

    Args:
        min_period: shortest period considered, in tokens.
        max_period: longest period considered; at most `min_span_tokens // min_repeats`.
        min_repeats: the span must hold at least this many periods.
        min_span_tokens: length of the examined tail; a loop must cover at least this much.
        min_match: fraction of tail positions equal to the id one period earlier.
        check_every: `update` examines the tails on one call in this many.
    """

    def __init__(
        self,
        min_period: int = 1,
        max_period: int = 128,
        min_repeats: int = 4,
        min_span_tokens: int = 768,
        min_match: float = 0.8,
        check_every: int = 32,
    ):
        if min_period < 1 or max_period < min_period:
            raise ValueError(f"need 1 <= min_period <= max_period, got {min_period}, {max_period}")
        if min_repeats < 2:
            raise ValueError(f"min_repeats must be >= 2, got {min_repeats}")
        if max_period * min_repeats > min_span_tokens:
            raise ValueError(
                f"max_period * min_repeats ({max_period} * {min_repeats}) exceeds "
                f"min_span_tokens ({min_span_tokens}): the span could not hold the repeats"
            )
        if not 0.0 < min_match <= 1.0:
            raise ValueError(f"min_match must be in (0, 1], got {min_match}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.min_period = min_period
        self.max_period = max_period
        self.min_repeats = min_repeats
        self.min_span_tokens = min_span_tokens
        self.min_match = min_match
        self.check_every = check_every
        self._num_calls = 0

    def __repr__(self) -> str:
        return (
            f"LoopDetector(min_period={self.min_period}, max_period={self.max_period}, "
            f"min_repeats={self.min_repeats}, min_span_tokens={self.min_span_tokens}, "
            f"min_match={self.min_match}, check_every={self.check_every})"
        )

    def update(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return a (B,) bool tensor, True where the generated tail is a loop.

        Call it every decode step: it counts its calls and examines the tails on the first
        call and on every `check_every`-th one after it; the other calls return all False
        without work (a loop persists, so it is caught at most `check_every - 1` steps late).
        Use `match_fraction` for an unconditional check.

        Args:
            tokens: (B, L) buffer of ids per row, right-padded: either generated ids only,
                or prompt + generated ids with `prompt_lengths` given.
            lengths: (B,) long, valid ids per row.
            prompt_lengths: (B,) long, where generation starts in each row. Needed when the
                buffer holds the prompt: its run of `<image>` ids is perfectly periodic.
        """
        is_due = self._num_calls % self.check_every == 0
        self._num_calls += 1
        if not is_due:
            return torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return self.match_fraction(tokens, lengths, prompt_lengths) >= self.min_match

    def match_fraction(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The best periodic match fraction of each row's tail, (B,) float in [0, 1].

        Rows with fewer than `min_span_tokens + p` generated ids score 0 for period p.
        """
        span, top = self.min_span_tokens, self.max_period
        batch, buf_len = tokens.shape
        device = tokens.device
        # The last span + max_period ids of each row, gathered to a static (B, top + span).
        pos = (lengths - span - top)[:, None] + torch.arange(top + span, device=device)
        tail = tokens.gather(1, pos.clamp(0, buf_len - 1))
        last = tail[:, top:]  # (B, span)
        # One (B, span) compare per period keeps memory at B * span, not B * P * span.
        same = torch.stack(
            [(tail[:, top - p : top - p + span] == last).sum(-1) for p in self._periods()], dim=1
        )  # (B, P)
        periods = torch.arange(self.min_period, top + 1, device=device)  # (P,)
        fraction = same.float() / span
        start = prompt_lengths if prompt_lengths is not None else torch.zeros_like(lengths)
        num_generated = (lengths - start)[:, None]  # (B, 1)
        fraction = fraction.masked_fill(num_generated < span + periods[None, :], 0.0)
        return fraction.amax(-1)

    def loop_start(self, token_ids: list[int]) -> int | None:
        """The first length at which `update` would flag this sequence (checked every step).

        Calibration helper for one generated sequence (no prompt), computed for all lengths
        at once with running sums rather than by calling `update` at every length.
        """
        ids = torch.tensor(token_ids, dtype=torch.long)
        num, span, top = len(ids), self.min_span_tokens, self.max_period
        if num < span + self.min_period:
            return None
        padded = torch.cat([torch.full((top,), -1, dtype=torch.long), ids.clamp(min=0)])
        periods = torch.arange(self.min_period, top + 1)  # (P,)
        earlier = padded.unfold(0, num, 1)[top - periods]  # (P, N): ids[j - p], -1 before 0
        same = torch.zeros(len(periods), num + 1, dtype=torch.long)
        same[:, 1:] = torch.cumsum((earlier == ids[None, :]).long(), dim=1)  # matches before L
        ends = torch.arange(span, num + 1)  # candidate lengths L; the span is ids[L - span : L]
        fraction = (same[:, ends] - same[:, ends - span]).float() / span  # (P, num ends)
        fraction = fraction.masked_fill(ends[None, :] < span + periods[:, None], 0.0)
        hits = torch.nonzero(fraction.amax(0) >= self.min_match).flatten()
        return int(ends[hits[0]]) if len(hits) else None

    def _periods(self) -> range:
        return range(self.min_period, self.max_period + 1)
