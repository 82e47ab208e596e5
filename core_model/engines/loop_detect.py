"""Repetition-loop detection while decoding, as batched tensor ops.

Some pages never emit EOS: the decoder repeats a chunk (a word, a table row, a block with
stepping coordinates, a counter "331 0 0 0 ..." inside a box) until the token limit, which
costs up to 8192 decode steps per page. The no-repeat n-gram rule does not stop these loops:
it only forbids *exact* n-grams, so it perturbs a loop rather than ending it.

The test asks whether the tail adds anything new. For each of the last `min_span_tokens`
generated positions it checks whether the `ngram` ids ending there occurred, in the same
order, between `min_period` and `max_period` positions earlier (in generated text); a row is
looping when at least `min_match` of the span's positions are such repeats. Content is
compared exactly: a list of distinct items (`2 [4,1,0], 3 [4,0,1], ...`), a timetable or
similar answer options keep producing new n-grams and never count as a loop, however similar
their rows look. Coordinates are layout, not content: ids inside `<|det|> ... <|/det|>` (or
after a `<|det|>` that never closes) compare equal to each other, so blocks whose boxes step
down the page and counters looping inside a box are caught. The defaults were calibrated on
real outputs (tests/test_loop_detect.py, docs/engines.md): every looping page of the corpus
is caught and no clean page is, including a notebook page with 30 legitimately identical
blocks (their repetition covers fewer than `min_span_tokens` tokens).

The work is max_period (B, span) comparisons plus one running maximum over the buffer for
the box spans. `update` is meant to be called every decode step and does the work on one
call in `check_every` (a loop persists, so nothing is lost but a few steps). The buffer may
hold generated ids only, or prompt + generated ids with `prompt_lengths` telling where
generation starts.

torch is imported by the tensor methods only: `loop_start`, which engines that receive
finished token lists use (the vLLM and OpenAI engines), runs on numpy, so they work without
torch installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

DET_OPEN_ID = 128818  # <|det|> in the released tokenizer (SPEC.md)
DET_CLOSE_ID = 128819  # <|/det|>
_BOX_ID = -1  # what ids inside a box become: equal to each other, to no real id
PERIODS_PER_STEP = 16  # distances compared at once in `match_fraction`


def mask_boxes(tokens: torch.Tensor, det_open: int, det_close: int) -> torch.Tensor:
    """`tokens` (B, L) with every id inside a `<|det|>..<|/det|>` span replaced by `_BOX_ID`."""
    import torch

    index = torch.arange(tokens.shape[-1], device=tokens.device).expand_as(tokens)
    return _mask_between(tokens, index, det_open, det_close, None, None)


def _mask_between(
    ids: torch.Tensor,
    index: torch.Tensor,
    det_open: int,
    det_close: int,
    open_before: torch.Tensor | None,
    close_before: torch.Tensor | None,
) -> torch.Tensor:
    """`ids` (B, W) at positions `index` (B, W), ids inside a box masked; `open_before` /
    `close_before` (B,) are the positions of the last tags before the first column."""
    import torch

    none = torch.full_like(index, -1)
    last_open = torch.where(ids == det_open, index, none).cummax(-1).values
    last_close = torch.where(ids == det_close, index, none).cummax(-1).values
    if open_before is not None and close_before is not None:
        last_open = torch.maximum(last_open, open_before[:, None])
        last_close = torch.maximum(last_close, close_before[:, None])
    inside = (last_open > last_close) & (ids != det_open)
    return ids.masked_fill(inside, _BOX_ID)


class LoopDetector:
    """Flags sequences whose generated tail repeats what came before (module docstring).

    Args:
        min_period: shortest distance back to a repeat considered, in tokens.
        max_period: longest such distance; at most `min_span_tokens // min_repeats`, so a
            unit of that length repeats at least `min_repeats` times in the span.
        min_repeats: see `max_period`.
        min_span_tokens: length of the examined tail; a loop must cover at least this much.
        min_match: share of the tail's positions whose `ngram` ids repeat ids between
            `min_period` and `max_period` positions earlier.
        check_every: `update` examines the tails on one call in this many.
        ngram: how many ids in a row must repeat for a position to count as a repeat.
        det_open_id, det_close_id: the ids of `<|det|>` and `<|/det|>`; ids between them are
            coordinates and compare equal. None turns box masking off.
    """

    def __init__(
        self,
        min_period: int = 1,
        max_period: int = 128,
        min_repeats: int = 4,
        min_span_tokens: int = 768,
        min_match: float = 0.97,
        check_every: int = 32,
        ngram: int = 4,
        det_open_id: int | None = DET_OPEN_ID,
        det_close_id: int | None = DET_CLOSE_ID,
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
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.min_period = min_period
        self.max_period = max_period
        self.min_repeats = min_repeats
        self.min_span_tokens = min_span_tokens
        self.min_match = min_match
        self.check_every = check_every
        self.ngram = ngram
        self.det_open_id = det_open_id
        self.det_close_id = det_close_id
        self._num_calls = 0

    def __repr__(self) -> str:
        return (
            f"LoopDetector(min_period={self.min_period}, max_period={self.max_period}, "
            f"min_repeats={self.min_repeats}, min_span_tokens={self.min_span_tokens}, "
            f"min_match={self.min_match}, check_every={self.check_every}, ngram={self.ngram})"
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
            import torch

            return torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return self.match_fraction(tokens, lengths, prompt_lengths) >= self.min_match

    def _masked_tail(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The ids at `pos` (B, W), box contents masked; the tags before the tail are found
        with one max over the buffer rather than a running maximum over all of it."""
        import torch

        tail = tokens.gather(1, pos)
        if self.det_open_id is None or self.det_close_id is None:
            return tail
        index = torch.arange(tokens.shape[1], device=tokens.device)
        before = index[None, :] < pos[:, :1]  # (B, L)
        open_before = torch.where((tokens == self.det_open_id) & before, index, -1).amax(-1)
        close_before = torch.where((tokens == self.det_close_id) & before, index, -1).amax(-1)
        return _mask_between(tail, pos, self.det_open_id, self.det_close_id, open_before, close_before)

    def match_fraction(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The share of each row's last `min_span_tokens` positions that repeat, (B,) float.

        A position repeats when its `ngram` ids equal the ids p positions earlier for some p
        in [min_period, max_period], all of them generated ids. Rows with fewer than
        `min_span_tokens` generated ids score 0.
        """
        import torch

        span, top, n = self.min_span_tokens, self.max_period, self.ngram
        batch, buf_len = tokens.shape
        device = tokens.device
        width = top + span + n - 1
        # The last `width` positions of each row, gathered to a static (B, width).
        pos = (lengths - width)[:, None] + torch.arange(width, device=device)
        tail = self._masked_tail(tokens, pos.clamp(0, buf_len - 1)).to(torch.int32)
        start = prompt_lengths if prompt_lengths is not None else torch.zeros_like(lengths)
        is_generated = pos >= start[:, None]  # (B, width)
        windows = tail.unfold(1, span + n - 1, 1)  # (B, top + 1, span + n - 1): window w starts at w
        valid = is_generated.unfold(1, span + n - 1, 1)
        current = windows[:, top : top + 1]  # (B, 1, span + n - 1), the last positions
        seen = torch.zeros(batch, span, dtype=torch.bool, device=device)
        periods = list(self._periods())
        for first in range(0, len(periods), PERIODS_PER_STEP):  # bounded memory, few kernels
            chunk = periods[first : first + PERIODS_PER_STEP]  # consecutive distances: a slice,
            rows = slice(top - chunk[-1], top - chunk[0] + 1)  # no index copied to the device
            same = (windows[:, rows] == current) & valid[:, rows]  # (B, P, span + n - 1)
            grams = same[..., :span]
            for k in range(1, n):  # n ids in a row repeat
                grams = grams & same[..., k : k + span]
            seen |= grams.any(1)
        fraction = seen.float().mean(-1)
        num_generated = lengths - start
        return fraction.masked_fill(num_generated < span, 0.0)

    def loop_start(self, token_ids: list[int]) -> int | None:
        """The first length at which `update` would flag this sequence (checked every step).

        For one finished, generated sequence (no prompt): the vLLM and OpenAI engines label
        pages that ran to the limit with it, and it calibrates the defaults. Computed for all
        lengths at once with running sums, on numpy (no torch needed).
        """
        num, span, n = len(token_ids), self.min_span_tokens, self.ngram
        if num < span:
            return None
        ids = np.asarray(token_ids, dtype=np.int64)
        if self.det_open_id is not None and self.det_close_id is not None:
            ids = _mask_boxes_1d(ids, self.det_open_id, self.det_close_id)
        seen = np.zeros(num, dtype=bool)
        for p in self._periods():
            if p >= num:
                break
            same = np.zeros(num, dtype=bool)
            same[p:] = ids[p:] == ids[:-p]  # position j repeats the id p earlier (j >= p)
            grams = same.copy()
            for k in range(1, n):  # and so do the n - 1 positions before it
                grams[k:] &= same[:-k]
                grams[:k] = False
            seen |= grams
        count = np.zeros(num + 1, dtype=np.int64)
        count[1:] = np.cumsum(seen)
        ends = np.arange(span, num + 1)  # candidate lengths L; the span is ids[L - span : L]
        # float32 like `match_fraction`, so both agree at the threshold
        fraction = (count[ends] - count[ends - span]).astype(np.float32) / np.float32(span)
        hits = np.flatnonzero(fraction >= np.float32(self.min_match))
        return int(ends[hits[0]]) if len(hits) else None

    def _periods(self) -> range:
        return range(self.min_period, self.max_period + 1)


def _mask_boxes_1d(ids: np.ndarray, det_open: int, det_close: int) -> np.ndarray:
    """`mask_boxes` for one sequence of ids, on numpy."""
    index = np.arange(len(ids))
    last_open = np.maximum.accumulate(np.where(ids == det_open, index, -1))
    last_close = np.maximum.accumulate(np.where(ids == det_close, index, -1))
    inside = (last_open > last_close) & (ids != det_open)
    return np.where(inside, _BOX_ID, ids)
