"""Pure layout logic for kernels that normalize several row tensors, each with its own weight and width.

MLA's fused q / k RMSNorm and aiter's Triton fused RMSNorm + quant take pairs ``(rows, weight)``:
each weight is read as its rows' ``n`` elements, and the rows after the first are read with
the first's row count.  :func:`refusal` says when no layout can make the kernel right,
:func:`plan` gives each tensor a layout the kernel reads (never a new rank).  Knows nothing of
sglang or of patching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aiter_norm_guard.guard.layout import (
    DTYPE,
    HIDDEN_SIZE,
    HOST_TENSOR,
    NOT_2D,
    RANK_ZERO,
    ROWS_MISMATCH,
    STRIDED_WEIGHT,
    ZERO,
    Plan,
    expanded,
)
from aiter_norm_guard.kernels.needs import ANY, CONTIGUOUS, ROWS, Needs

Tensor = torch.Tensor
Pair = tuple[Tensor, Tensor]


def refusal(pairs: Sequence[Pair], rows: Sequence[Tensor], needs: Needs) -> str | None:
    """Why no layout can make the kernel right for these ``(rows, weight)`` pairs (the first one's
    rows set ``m``) and the extra ``rows`` indexed like the first pair's, or None."""
    x = pairs[0][0]
    if x.dim() == 0:
        return RANK_ZERO
    tensors = [t for pair in pairs for t in pair] + list(rows)
    if needs.layout == ROWS and any(t.dim() != 2 for t in (*(t for t, _ in pairs), *rows)):
        return NOT_2D  # read with n = size(1), m = numel / n: no layout of another rank is read right
    if needs.device and not all(t.is_cuda for t in tensors):
        return HOST_TENSOR
    if needs.nonempty and x.numel() == 0:
        return ZERO
    for t, w in pairs:
        if t.dim() == 0 or (needs.same_rows and t.shape[0] != x.shape[0]):
            return ROWS_MISMATCH
        if needs.weight_dtype and w.dtype != t.dtype:
            return DTYPE
        if w.numel() != t.shape[-1]:
            return HIDDEN_SIZE
        if needs.weight_contiguous and not w.is_contiguous():
            return STRIDED_WEIGHT
    if needs.same_rows and any(r.shape != x.shape or (needs.rows_dtype and r.dtype != x.dtype) for r in rows):
        return ROWS_MISMATCH
    return None


def _fits(t: Tensor, needs: Needs) -> bool:
    if needs.layout == ANY:
        return not (needs.positive_strides and expanded(t))
    if needs.layout == CONTIGUOUS:
        return t.is_contiguous()
    return t.dim() < 2 or t.stride(-1) == 1 or t.size(-1) == 1  # rows through stride(0), elements one apart


def plan(tensors: Sequence[Tensor], needs: Needs) -> Plan | None:
    """The row tensors (every pair's, then the extra rows) in a layout the kernel reads: each the same
    object when it already is, else one contiguous copy of it; or None if all already fit."""
    if all(_fits(t, needs) for t in tensors):
        return None
    new = tuple(t if _fits(t, needs) else t.contiguous() for t in tensors)
    first = tensors[0].shape
    return Plan(new, first, first, sum(a is not b for a, b in zip(new, tensors, strict=True)))
