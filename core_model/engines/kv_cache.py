"""A paged KV cache: fixed-size blocks of positions, handed to sequences as they grow.

Keys and values live in one `(blocks, heads, block_size, head_dim)` tensor pair per layer. A
sequence (a row of the block table, its "slot") owns a list of blocks; position p of slot s is
at `block_table[s, p // block_size]`, offset `p % block_size`. Memory then follows the real
length of each page (a prompt of ~900 tokens and an output of a few dozen to a few thousand)
instead of reserving the longest possible page for every slot, so several times more pages
decode at once. Nothing is ever reallocated: the block table is a static tensor that CUDA
graphs read, and `BlockAllocator` (host side) writes new entries into it between steps.

Block 0 is scratch: every unassigned table entry points to it, and padding (the prompt
padding of a prefill, the idle rows of a decode bucket) writes there; no sequence reads it,
because attention reads only positions below a row's length.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.attention import Attention, AttentionContext
from core_model.config import DecoderConfig

BLOCK_SIZE = 128  # positions per block; a multiple of decode_attention.BLOCK_N
SCRATCH = 0


def blocks_for(tokens: int, block_size: int = BLOCK_SIZE) -> int:
    return -(-tokens // block_size)


class KVCache:
    def __init__(
        self,
        cfg: DecoderConfig,
        num_blocks: int,
        *,
        max_seqs: int,
        max_len: int,
        block_size: int = BLOCK_SIZE,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (cfg.num_hidden_layers, num_blocks, cfg.num_key_value_heads, block_size, cfg.head_dim)
        self.num_blocks, self.block_size = num_blocks, block_size
        self.max_seqs, self.max_len = max_seqs, max_len
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, blocks, Hkv, block, D)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # Row max_seqs is the padding row: all scratch.
        self.block_table = torch.full((max_seqs + 1, blocks_for(max_len, block_size)), SCRATCH,
                                      dtype=torch.int32, device=device)  # (slots + 1, blocks)
        self.pad_slot = max_seqs

    @classmethod
    def contiguous(
        cls, cfg: DecoderConfig, num_seqs: int, max_len: int, *, device: torch.device | str,
        dtype: torch.dtype,
    ) -> KVCache:
        """Room for `num_seqs` sequences of `max_len` positions, blocks assigned up front
        (tests and single-sequence tools that drive the model without the engine)."""
        per_seq = blocks_for(max_len)
        cache = cls(cfg, 1 + num_seqs * per_seq, max_seqs=num_seqs, max_len=max_len,
                    device=device, dtype=dtype)
        blocks = torch.arange(1, 1 + num_seqs * per_seq, dtype=torch.int32).view(num_seqs, per_seq)
        cache.block_table[:num_seqs] = blocks.to(cache.block_table.device)
        return cache

    def bind(self, model: nn.Module) -> None:
        """Give each attention module its layer's view of the cache."""
        attentions = [m for m in model.modules() if isinstance(m, Attention)]
        if len(attentions) != self.k.shape[0]:
            raise ValueError(f"cache has {self.k.shape[0]} layers, model {len(attentions)}")
        for layer, attn in enumerate(attentions):
            attn.k_cache, attn.v_cache = self.k[layer], self.v[layer]

    @staticmethod
    def unbind(model: nn.Module) -> None:
        """Drop the model's references to a cache (before another engine sizes its own)."""
        for m in model.modules():
            if isinstance(m, Attention):
                m.k_cache = m.v_cache = None

    def prefill_context(self, slots: torch.Tensor, lengths: torch.Tensor, T: int) -> AttentionContext:
        """Right-padded prompts (n, T) of these slots: position t of row i is written to its
        block, padding (t >= lengths[i]) to scratch."""
        pos = torch.arange(T, device=slots.device)
        blocks = self.block_table[slots][:, pos // self.block_size].long()  # (n, T)
        blocks = blocks.masked_fill(pos[None, :] >= lengths[:, None], SCRATCH)
        return AttentionContext(is_prefill=True, write_blocks=blocks,
                                write_offsets=(pos % self.block_size).expand_as(blocks))

    def decode_context(self, slots: torch.Tensor, positions: torch.Tensor, *, use_kernel: bool,
                       span: int = 0) -> AttentionContext:
        """One new token per row at `positions` of `slots`, attending to positions <= its own.
        Without the kernel, masked SDPA reads positions [0, span)."""
        tables = self.block_table[slots]  # (B, max blocks)
        blocks = tables.gather(1, (positions // self.block_size)[:, None])[:, 0].long()  # (B,)
        mask = None
        if not use_kernel:
            cache_pos = torch.arange(span, device=positions.device)
            mask = (cache_pos[None, :] <= positions[:, None])[:, None, None, :]  # (B, 1, 1, span)
        return AttentionContext(
            is_prefill=False, positions=positions, write_blocks=blocks,
            write_offsets=positions % self.block_size, block_tables=tables,
            decode_mask=mask, kv_span=span, use_kernel=use_kernel,
        )

    @staticmethod
    def bytes_per_token(cfg: DecoderConfig, dtype: torch.dtype) -> int:
        item = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * item

    @classmethod
    def blocks_for_memory(
        cls, cfg: DecoderConfig, budget_bytes: int, dtype: torch.dtype, block_size: int = BLOCK_SIZE
    ) -> int:
        """How many blocks fit in `budget_bytes`."""
        return max(0, budget_bytes // (cls.bytes_per_token(cfg, dtype) * block_size))


class BlockAllocator:
    """Which blocks are free and which slot owns which (host side); writes the block table."""

    def __init__(self, cache: KVCache) -> None:
        self.cache = cache
        self.free = list(range(cache.num_blocks - 1, SCRATCH, -1))  # pop() hands out low ids first
        self.owned: dict[int, list[int]] = {}
        self._updates: list[tuple[int, int, int]] = []  # (slot, index, block) not yet written

    @property
    def num_free(self) -> int:
        return len(self.free)

    def held(self, slot: int) -> int:
        """Positions `slot`'s blocks hold."""
        return len(self.owned.get(slot, ())) * self.cache.block_size

    def needed(self, slot: int, tokens: int) -> int:
        """Blocks `slot` still needs to hold positions [0, tokens)."""
        return max(0, blocks_for(tokens, self.cache.block_size) - len(self.owned.get(slot, ())))

    def grow(self, slot: int, tokens: int) -> bool:
        """Give `slot` the blocks for positions [0, tokens); False (nothing taken) if they
        are not free."""
        n = self.needed(slot, tokens)
        if n > len(self.free):
            return False
        owned = self.owned.setdefault(slot, [])
        for _ in range(n):
            self._updates.append((slot, len(owned), self.free[-1]))
            owned.append(self.free.pop())
        return True

    def release(self, slot: int) -> None:
        blocks = self.owned.pop(slot, [])
        self.free.extend(reversed(blocks))
        self._updates = [u for u in self._updates if u[0] != slot]
        if blocks:  # stale entries would point into blocks another slot now owns
            self.cache.block_table[slot, : len(blocks)] = SCRATCH

    def flush(self) -> None:
        """Write the entries handed out since the last flush into the device block table.

        One copy that does not wait for the device: a blocking copy would wait for the decode
        step in flight before the next could be launched (a page crosses into a new block
        every 128 positions, so with hundreds of pages nearly every step has entries)."""
        if not self._updates:
            return
        table = self.cache.block_table
        entries = torch.tensor(self._updates).to(table.device, non_blocking=True)  # (n, 3)
        table[entries[:, 0], entries[:, 1]] = entries[:, 2].to(table.dtype)
        self._updates.clear()
