"""Batch collators (torch): pad supervised / pre-training rows; build neat-packing masks.

Padding is always on the right (training). ``pad_to_multiple_of=8`` in training keeps tensor
shapes friendly to tensor cores, as LLaMA-Factory does.

Neat packing and attention implementations:

- ``eager`` / ``sdpa``: each packed row's ``attention_mask`` holds sub-sequence indices
  (1, 2, ...; 0 = pad). :class:`SFTCollator` with ``block_diag_attn`` turns it into a 4-D
  additive mask ``[bsz, 1, seq, seq]``: 0 where query i may attend key j (same sub-sequence,
  not padding, j <= i) and ``finfo(dtype).min`` elsewhere. transformers returns a 4-D mask
  as-is, so sub-sequences cannot attend to each other.
- ``flash_attention_2``: no dense mask. The collator drops ``attention_mask`` and keeps the
  restarting ``position_ids``; transformers derives the variable-length boundaries
  (``cu_seqlens``) from where positions restart, which isolates sub-sequences the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunedeck.runner.data.processors import IGNORE_INDEX

FA2_NAMES = ("flash_attention_2", "flash_attention_3", "fa2", "fa3")


def _pad(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    # Padded Python lists and one torch.tensor call: a tensor write per row costs
    # about 3x as much on small batches, and the collator runs every step.
    padded = [list(r) + [value] * (length - len(r)) for r in rows]
    if not padded:
        return torch.full((0, length), value, dtype=torch.long)
    return torch.tensor(padded, dtype=torch.long)


def _target_len(rows: Sequence[Sequence[int]], multiple: int | None) -> int:
    n = max((len(r) for r in rows), default=0)
    if multiple and n % multiple:
        n += multiple - n % multiple
    return n


def prepare_4d_attention_mask(indexed_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[bsz, seq]`` sub-sequence indices (0 = pad) -> ``[bsz, 1, seq, seq]`` additive mask."""
    bsz, seq_len = indexed_mask.shape
    min_value = torch.finfo(dtype).min
    keys = indexed_mask[:, None, None, :]       # [b, 1, 1, s]
    queries = indexed_mask[:, None, :, None]    # [b, 1, s, 1]
    causal = torch.tril(torch.ones((seq_len, seq_len), dtype=torch.bool, device=indexed_mask.device))
    allowed = (keys == queries) & (keys != 0) & causal
    zero = torch.zeros((), dtype=dtype, device=indexed_mask.device)
    return torch.where(allowed, zero, torch.tensor(min_value, dtype=dtype, device=indexed_mask.device))


@dataclass
class SFTCollator:
    """Pads ``input_ids`` (pad id), ``labels`` (-100), ``attention_mask`` (0) and
    ``position_ids`` (0) to the longest row, rounded up to ``pad_to_multiple_of``.

    ``block_diag_attn`` (neat packing): build the 4-D mask for eager/sdpa, or drop the mask and
    rely on ``position_ids`` for flash attention (``attn_implementation``).
    Extra columns (anything not listed above) are ignored.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = 8
    block_diag_attn: bool = False
    attn_implementation: str = "sdpa"
    dtype: torch.dtype = torch.float32
    label_pad_token_id: int = IGNORE_INDEX

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        length = _target_len(ids, self.pad_to_multiple_of)
        batch = {"input_ids": _pad(ids, length, self.pad_token_id)}
        if "labels" in features[0]:
            batch["labels"] = _pad([f["labels"] for f in features], length, self.label_pad_token_id)
        if "attention_mask" in features[0]:
            mask = _pad([f["attention_mask"] for f in features], length, 0)
        else:
            mask = _pad([[1] * len(r) for r in ids], length, 0)
        if "position_ids" in features[0]:
            batch["position_ids"] = _pad([f["position_ids"] for f in features], length, 0)
        if self.block_diag_attn:
            if self.attn_implementation in FA2_NAMES:
                if "position_ids" not in batch:
                    raise ValueError("neat packing with flash attention needs position_ids")
                return batch  # varlen boundaries come from the restarting position_ids
            batch["attention_mask"] = prepare_4d_attention_mask(mask, self.dtype)
        else:
            batch["attention_mask"] = mask
        return batch


@dataclass
class PTCollator:
    """Pre-training: pads like :class:`SFTCollator`; labels = input ids, -100 on padding
    (decided by the attention mask, so an eos that doubles as pad is still learned)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        length = _target_len(ids, self.pad_to_multiple_of)
        input_ids = _pad(ids, length, self.pad_token_id)
        mask = _pad([f.get("attention_mask") or [1] * len(f["input_ids"]) for f in features], length, 0)
        labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
