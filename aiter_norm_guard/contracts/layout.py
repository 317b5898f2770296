"""Pure layout logic: what aiter's norm kernels can read, and how to give results back.

aiter's HIP and CK norm kernels take ``n = size(1)`` (CK: ``size(-1)``), ``m = numel // n``
and ``stride(0)`` as the row pitch of every tensor, assume a unit last stride, read the
weight (and bias) as ``n`` elements of the activation's dtype without checking its length,
and cannot launch zero rows.  This module says when no layout can make such a kernel right
(:func:`refusal`), and otherwise turns the activation and the tensors indexed with its rows
into that form (:func:`plan`): the same object when it already is, a view when one exists,
else exactly one copy.  It knows nothing of sglang or of patching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

Tensor = torch.Tensor

#: Why a call cannot go to the kernel in any layout (the entry's fallback runs instead).
ZERO_ROWS = "zero rows"
RANK_ZERO = "rank 0"
WEIGHT_DTYPE = "weight dtype differs from the activation's"
HIDDEN_SIZE = "weight length differs from the hidden size"
STRIDED_WEIGHT = "weight is not contiguous"
ROWS_MISMATCH = "residual differs from the activation in shape or dtype"
ROWS_EXPAND = "residual would broadcast the activation to more rows"


def is_row_strided(t: Tensor) -> bool:
    """2-D, unit last stride, rows that do not overlap: readable through ``stride(0)``."""
    return t.dim() == 2 and t.stride(1) == 1 and t.stride(0) >= t.size(1)


def as_rows(t: Tensor, allow_row_stride: bool = False) -> Tensor:
    """``t`` as a 2-D ``(-1, hidden)`` tensor the kernel reads correctly.

    The same object if it already is 2-D contiguous (or, with ``allow_row_stride``,
    2-D row-strided); a view if ``t`` is contiguous; otherwise exactly one copy.
    """
    if t.dim() == 2:
        if t.is_contiguous() or (allow_row_stride and is_row_strided(t)):
            return t
        return t.contiguous()
    if t.is_contiguous():
        return t.view(-1, t.size(-1))
    return t.contiguous().view(-1, t.size(-1))


def weight_refusal(hidden: int, dtype: torch.dtype, weights: Sequence[Tensor]) -> str | None:
    """Why the kernel would misread one of ``weights`` for rows of ``hidden`` elements of ``dtype``."""
    for w in weights:
        if w.dtype != dtype:
            return WEIGHT_DTYPE
        if w.numel() != hidden:
            return HIDDEN_SIZE
        if not w.is_contiguous():
            return STRIDED_WEIGHT
    return None


def refusal(x: Tensor, like_x: Sequence[Tensor], weights: Sequence[Tensor]) -> str | None:
    """Why no layout can make the kernel right for these tensors, or None.

    Zero elements (no grid to launch), rank 0, a weight the kernel would misread (another
    dtype, another length than ``x``'s last dimension, a stride), or a tensor indexed with
    ``x``'s rows (``like_x``: residual, post-residual addition) of another shape or dtype
    (:data:`ROWS_EXPAND` where broadcasting it against ``x`` would give more elements than ``x``:
    the reference path would compute a tensor many times the caller's).
    """
    if x.dim() == 0:
        return RANK_ZERO
    if x.numel() == 0:
        return ZERO_ROWS
    for r in like_x:
        if r.shape != x.shape:
            try:
                wide = math.prod(torch.broadcast_shapes(x.shape, r.shape)) > x.numel()
            except RuntimeError:  # incompatible: the reference path raises its own error
                wide = False
            return ROWS_EXPAND if wide else ROWS_MISMATCH
        if r.dtype != x.dtype:
            return ROWS_MISMATCH
    return weight_refusal(x.shape[-1], x.dtype, weights)


class Plan(NamedTuple):
    """Canonical tensors for the kernel, in the order given, and the caller's shape to restore."""

    tensors: tuple[Tensor, ...]
    rows_shape: torch.Size
    caller_shape: torch.Size

    def restore(self, result: object) -> object:
        """The original's result with every tensor of the rows' shape given back in the caller's shape."""
        if self.rows_shape == self.caller_shape:
            return result
        if isinstance(result, Tensor):
            return result.view(self.caller_shape) if result.shape == self.rows_shape else result
        if isinstance(result, tuple):
            return tuple(self.restore(r) for r in result)
        return result


def plan(x: Tensor, like_x: Sequence[Tensor], allow_row_stride: bool = False, keep_rank: bool = False) -> Plan:
    """Canonicalize ``x`` (row-strided 2-D allowed if asked) and the tensors indexed with its rows.

    ``keep_rank`` is for entries that unpack a 2-D shape themselves: tensors are only made
    contiguous, never flattened.
    """
    if keep_rank:
        tensors = tuple(t if t.is_contiguous() else t.contiguous() for t in (x, *like_x))
        return Plan(tensors, x.shape, x.shape)
    x2 = as_rows(x, allow_row_stride)
    return Plan((x2, *(as_rows(t) for t in like_x)), x2.shape, x.shape)
