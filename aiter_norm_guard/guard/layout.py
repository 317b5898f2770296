"""Pure layout logic: what an entry's kernels cannot take, and the canonical tensors they can.

Given the tensors of one call, what the kernels need (:class:`~aiter_norm_guard.kernels.needs.Needs`)
and what the release's own entry already does before its kernel (``done``: names from
:mod:`~aiter_norm_guard.kernels.needs`), :func:`exit_of` says when the release leaves
before any kernel, :func:`refusal` when no layout can make the kernel right, and :func:`plan`
the canonical tensors (the same object when already right, a view when one exists, else
exactly one copy) with a restore plan.  Knows nothing of sglang or of patching.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple

import torch

from aiter_norm_guard.kernels.needs import (
    ANY,
    CONTIGUOUS,
    HOST,
    ROWS_LAYOUT,
    WEIGHT_DTYPE,
    WEIGHT_STRIDE,
    X_CONTIGUOUS_2D,
    X_LAYOUT,
    X_RESHAPED,
    ZERO_ROWS,
    Needs,
)

Tensor = torch.Tensor


#: Why a call cannot go to the kernel in any layout (the entry's fallback runs instead).
RANK_ZERO = "rank 0"
NOT_2D = "not 2-D"  # a kernel that takes n = size(1) and rows through stride(0), given another rank
HOST_TENSOR = "host tensor"
ZERO = "zero rows"
DTYPE = "weight dtype"
HIDDEN_SIZE = "hidden size"
STRIDED_WEIGHT = "strided weight"
ROWS_MISMATCH = "residual shape or dtype"
ROWS_EXPAND = "residual would broadcast the activation to more rows"
#: The guard's own code failed on a call its fast path did not pass: the fallback, the safe route.
GUARD_ERROR = "guard error"
#: A layout the kernel cannot read, where the entry's caller has its own route for that (the all-reduce fusion).
LAYOUT_DECLINED = "layout the kernel cannot read"
#: How a layout was fixed (the guard counts these too).
LAYOUT_COPY = "layout copy"
VIEW = "view"
WEIGHT_COPY = "weight copy"  # a strided weight given to the kernel as one contiguous copy


def expanded(t: Tensor) -> bool:
    return any(size > 1 and stride <= 0 for size, stride in zip(t.shape, t.stride(), strict=True))


def is_row_strided(t: Tensor) -> bool:
    """2-D, unit last stride, rows that do not overlap: readable through ``stride(0)``."""
    return t.dim() == 2 and t.stride(1) == 1 and t.stride(0) >= t.size(1)


def as_rows(t: Tensor, allow_row_stride: bool = False) -> Tensor:
    """``t`` as 2-D ``(-1, hidden)`` rows: the same object if already right, a view if ``t`` is
    contiguous, else exactly one copy."""
    if t.dim() == 2:
        if t.is_contiguous() or (allow_row_stride and is_row_strided(t)):
            return t
        return t.contiguous()
    if t.is_contiguous():
        return t.view(-1, t.size(-1))
    return t.contiguous().view(-1, t.size(-1))


def exit_of(x: Tensor, weights: Sequence[Tensor], done: Collection[str]) -> bool:
    """Whether the release itself leaves before any kernel for this call (its zero-row return,
    its host-tensor or weight-dtype route to native), in the order it checks them."""
    if x.dim() == 0:
        return False
    return (
        (ZERO_ROWS in done and x.shape[0] == 0)
        or (HOST in done and not x.is_cuda)
        or (WEIGHT_DTYPE in done and any(w.dtype != x.dtype for w in weights))
    )


def _rows_refusal(x: Tensor, rows: Sequence[Tensor], summed: Sequence[Tensor], flattened: bool) -> str | None:
    """``flattened``: the release itself reshapes ``x``, the residual and the summed tensors to
    ``(-1, n)`` before its kernel, so they are compared as those rows, not as the caller's shapes."""
    n = x.shape[-1]

    def shape(t: Tensor) -> torch.Size:
        return torch.Size((t.numel() // n, n)) if flattened and n and t.dim() and t.shape[-1] == n else t.shape

    x_shape = shape(x)
    for r in rows:
        if shape(r) != x_shape or r.dtype != x.dtype:
            try:
                wide = math.prod(torch.broadcast_shapes(x_shape, shape(r))) > x.numel()
            except RuntimeError:  # incompatible: the reference path raises its own error
                wide = False
            return ROWS_EXPAND if wide else ROWS_MISMATCH
    if rows and summed:  # added to the residual in Python: the sum must still be x's shape and dtype
        try:
            sum_shape = torch.broadcast_shapes(shape(rows[0]), *(shape(p) for p in summed))
        except RuntimeError:  # flattened: the release's own sum raises, before its kernel
            return None if flattened else ROWS_MISMATCH
        dtype = rows[0].dtype
        for p in summed:
            dtype = torch.promote_types(dtype, p.dtype)
        if sum_shape != x_shape or dtype != x.dtype:
            return ROWS_EXPAND if math.prod(sum_shape) > x.numel() else ROWS_MISMATCH
    return None


def refusal(
    x: Tensor,
    rows: Sequence[Tensor],
    summed: Sequence[Tensor],
    weights: Sequence[Tensor],
    needs: Needs,
    done: Collection[str] = (),
    hidden: int | None = None,
) -> str | None:
    """Why no layout can make the kernels right for these tensors, or None.

    ``rows``: tensors indexed with ``x``'s rows (residual); ``summed``: tensors the entry adds
    to the first of them in Python (post-residual addition); ``hidden``: the hidden size the
    entry reshapes to (else ``x``'s last dimension).
    """
    if x.dim() == 0:
        return RANK_ZERO
    n = x.shape[-1] if hidden is None else hidden
    if x.shape[-1] != n:
        return HIDDEN_SIZE
    if needs.device and (
        (HOST not in done and not x.is_cuda) or not all(t.is_cuda for t in (*rows, *summed, *weights))
    ):
        return HOST_TENSOR
    if needs.nonempty and x.numel() == 0:
        return ZERO
    if needs.same_rows or summed:
        reason = _rows_refusal(x, rows, summed, ROWS_LAYOUT in done and x.dim() != 2)
        if reason is not None:
            return reason
    for w in weights:
        if needs.weight_dtype and WEIGHT_DTYPE not in done and w.dtype != x.dtype:
            return DTYPE
        if w.numel() != n:
            return HIDDEN_SIZE
        if needs.weight_contiguous and WEIGHT_STRIDE not in done and not w.is_contiguous():
            return STRIDED_WEIGHT
    return None


class Plan(NamedTuple):
    """Canonical tensors for the kernel, in the order given (None: leave the argument out), and the
    caller's shape to restore."""

    tensors: tuple[Tensor | None, ...]
    rows_shape: torch.Size
    caller_shape: torch.Size
    copies: int = 0

    @property
    def kind(self) -> str:
        """How the layout was fixed, for the intervention counts: with a copy, or a view alone."""
        return LAYOUT_COPY if self.copies else VIEW

    def restore(self, result: object) -> object:
        """The original's result with every tensor of the rows' shape given back in the caller's shape."""
        if self.rows_shape == self.caller_shape:
            return result
        if isinstance(result, Tensor):
            return result.view(self.caller_shape) if result.shape == self.rows_shape else result
        if isinstance(result, tuple):
            return tuple(self.restore(r) for r in result)
        return result


def _x_fits(x: Tensor, needs: Needs, done: Collection[str], with_rows: bool, allow_row_stride: bool) -> bool:
    if X_LAYOUT in done or needs.layout == ANY:
        return True
    if X_CONTIGUOUS_2D in done and x.dim() == 2:
        return True
    if X_RESHAPED in done:  # the release's reshape keeps a view: only its unit last stride matters
        return x.stride(-1) == 1
    if needs.layout == CONTIGUOUS:
        return x.is_contiguous()
    return x.dim() == 2 and (x.is_contiguous() or (allow_row_stride and not with_rows and is_row_strided(x)))


def plan(
    x: Tensor,
    rows: Sequence[Tensor],
    summed: Sequence[Tensor],
    needs: Needs,
    done: Collection[str] = (),
    allow_row_stride: bool = False,
    keep_rank: bool = False,
) -> Plan | None:
    """The tensors to hand the entry in place of ``(x, *rows, *summed)``, or None if they already fit.

    ``keep_rank`` is for entries that unpack a 2-D shape themselves: tensors are only made
    contiguous, never flattened.  Where ``x`` becomes rows, the ``summed`` tensors are added to
    the first row tensor here, as the entry itself adds them (``residual = residual + post``), in
    the caller's shape, so that any broadcast they make is the caller's; they are then left out
    (None) and the sum is viewed as rows: the release's one allocation, no copy.
    """
    given = (x, *rows, *summed)
    if needs.layout == ANY:  # the kernel honours strides; only a zero stride (expanded rows) breaks its assumption
        if not needs.positive_strides or not any(expanded(t) for t in (x, *rows)):
            return None
        tensors = tuple(t.contiguous() if expanded(t) else t for t in (x, *rows)) + tuple(summed)
        return Plan(tensors, x.shape, x.shape, sum(expanded(t) for t in (x, *rows)))
    rows_fit = ROWS_LAYOUT in done or all(r.is_contiguous() for r in rows)
    if rows_fit and _x_fits(x, needs, done, bool(rows), allow_row_stride):
        return None
    if keep_rank or needs.layout == CONTIGUOUS:
        tensors = tuple(t if t.is_contiguous() else t.contiguous() for t in (x, *rows)) + tuple(summed)
        shape = x.shape
    else:
        x2 = x if (X_CONTIGUOUS_2D in done and x.dim() == 2) else as_rows(x, allow_row_stride and not rows)
        if rows and summed:
            total = rows[0]
            for p in summed:
                total = total + p
            others = tuple(as_rows(r) for r in rows[1:])
            copies = _copies((x2, *others), (x, *rows[1:])) + (not total.is_contiguous())
            return Plan((x2, as_rows(total), *others, *(None for _ in summed)), x2.shape, x.shape, copies)
        tensors = (x2, *(as_rows(r) for r in rows))
        shape = x2.shape
    if all(a is b for a, b in zip(tensors, given, strict=True)):
        return None
    return Plan(tensors, shape, x.shape, _copies(tensors, given))


def _copies(new: Sequence[Tensor], given: Sequence[Tensor]) -> int:
    """How many of ``given`` were copied to make ``new`` (a non-contiguous tensor replaced)."""
    return sum(a is not b and not b.is_contiguous() for a, b in zip(new, given, strict=False))
