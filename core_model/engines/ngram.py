"""The no-repeat n-gram rule as batched tensor ops.

A token is banned for a sequence when, appended to the sequence, it would complete an n-gram
that already occurs in it. Two variants are used with DeepSeek-OCR:

- global (`window=None`): Hugging Face's `NoRepeatNGramLogitsProcessor`, used by the released
  HF `infer()` with n=20 (35 in its eval mode). Every position counts, the prompt included (HF passes the full
  `input_ids`; the prompt's run of `<image>` ids can never match a generated prefix).
- windowed: vLLM's DeepSeek-OCR `NoRepeatNGramLogitsProcessor` (wrapped by
  `NGramPerReqLogitsProcessor`), used by DeepSeek's vLLM scripts with n=20, window=50 and
  by the OmniDocBench run with n=30..40, window=90. It sees the generated ids only, looks
  at n-grams that *start* within the last `window` generated tokens, and never bans the
  whitelisted ids (`<td>`, `</td>` = 128821, 128822); they still take part in matching.

Which positions count: every valid position of the `tokens` buffer, minus those before
`prompt_lengths` when it is given. A buffer of generated ids only (as the native engine
keeps it) gives the vLLM rule exactly; for the HF rule it leaves out the n-grams that start
in the prompt (runs of `<image>` ids and a short instruction: they would only matter if the
output repeated the instruction's last n - 1 tokens). A buffer of prompt + generated ids
gives the HF rule exactly, and the vLLM rule with `prompt_lengths`.

Shapes are static (no data-dependent control flow, no `.item()`), so the rule can live
inside a captured CUDA graph; the work is O(B * L * n) compares and never materialises a
(B, L, V) tensor. torch is imported by the tensor methods only, so the vLLM and OpenAI
engines can read the settings below without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# The two settings seen in released code.
HF_NGRAM_SIZE = 20
VLLM_NGRAM_SIZE, VLLM_WINDOW = 20, 50
TABLE_CELL_IDS = (128821, 128822)  # <td>, </td>


class NoRepeatNGram:
    """Bans tokens that would repeat an n-gram, in place on a batch of logits.

    Args:
        n: n-gram size (>= 1). n=1 bans every token already present.
        window: look back only this many tokens (n-grams must start inside the last
            `window` positions), or None for the whole sequence.
        whitelist_ids: token ids never banned.
    """

    def __init__(self, n: int, window: int | None = None, whitelist_ids: Sequence[int] = ()):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a positive integer or None, got {window!r}")
        self.n = n
        self.window = window
        self.whitelist_ids = tuple(int(i) for i in whitelist_ids)
        self._whitelist: dict[torch.device, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"NoRepeatNGram(n={self.n}, window={self.window}, "
            f"whitelist_ids={list(self.whitelist_ids)})"
        )

    def apply(
        self,
        logits: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
    ) -> None:
        """Set banned logits to -inf, in place.

        Args:
            logits: (B, V) float scores for the next token.
            tokens: (B, L) long buffer of prompt + generated ids per row, right-padded.
            lengths: (B,) long, valid ids per row (the next token goes at `lengths`).
            prompt_lengths: (B,) long; positions before it are ignored (n-grams and the
                current prefix must lie in generated tokens). None: every position counts.
        """
        import torch

        n = self.n
        batch, buf_len = tokens.shape
        device = tokens.device
        if self.window is None:
            seq = tokens  # (B, S) with S = L, seq position == buffer position
            hi = lengths
            lo = prompt_lengths if prompt_lengths is not None else torch.zeros_like(lengths)
        else:
            # Only the last `window` tokens of each row: gather them to a static (B, W) view.
            offset = lengths - self.window  # (B,) buffer position of seq position 0
            pos = offset[:, None] + torch.arange(self.window, device=device)  # (B, W)
            seq = tokens.gather(1, pos.clamp(0, buf_len - 1))
            hi = torch.full_like(lengths, self.window)
            lo = torch.zeros_like(lengths) if prompt_lengths is None else prompt_lengths
            lo = (lo - offset).clamp(min=0)
        num_starts = seq.shape[1] - n + 1  # candidate n-gram starts j in [0, S - n]
        if num_starts <= 0:
            return
        # The current prefix: the last n - 1 valid ids of each row.
        prefix_pos = (hi - (n - 1))[:, None] + torch.arange(n - 1, device=device)  # (B, n-1)
        prefix = seq.gather(1, prefix_pos.clamp(0, seq.shape[1] - 1))
        match = torch.ones(batch, num_starts, dtype=torch.bool, device=device)
        for k in range(n - 1):
            match &= seq[:, k : k + num_starts] == prefix[:, k : k + 1]
        starts = torch.arange(num_starts, device=device)[None, :]  # (1, S - n + 1)
        match &= (starts >= lo[:, None]) & (starts + n <= hi[:, None])
        next_ids = seq[:, n - 1 : n - 1 + num_starts]  # the id each n-gram would repeat
        if self.whitelist_ids:
            match &= ~torch.isin(next_ids, self._whitelist_on(device))
        vocab = logits.shape[1]
        match &= (next_ids >= 0) & (next_ids < vocab)
        index = torch.where(match, next_ids, torch.zeros_like(next_ids)).long()
        src = torch.full(match.shape, float("inf"), dtype=logits.dtype, device=logits.device)
        src.masked_fill_(match, float("-inf"))
        # amin with +inf for "no ban" leaves a logit untouched; order of duplicates is irrelevant.
        logits.scatter_reduce_(1, index, src, reduce="amin", include_self=True)

    def _whitelist_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._whitelist:
            import torch

            self._whitelist[device] = torch.tensor(self.whitelist_ids, device=device)
        return self._whitelist[device]


def hf_rule(n: int = HF_NGRAM_SIZE) -> NoRepeatNGram:
    """The rule of the released Hugging Face `infer()` (global, prompt included)."""
    return NoRepeatNGram(n)


def vllm_rule(
    n: int = VLLM_NGRAM_SIZE,
    window: int = VLLM_WINDOW,
    whitelist_ids: Sequence[int] = TABLE_CELL_IDS,
) -> NoRepeatNGram:
    """The rule of DeepSeek's vLLM scripts (windowed over generated ids, table cells exempt)."""
    return NoRepeatNGram(n, window=window, whitelist_ids=whitelist_ids)
