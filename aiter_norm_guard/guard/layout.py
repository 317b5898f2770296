"""Pure layout logic: what an entry's kernels cannot take, and the canonical tensors they can.

A call is its groups (each a rows tensor with the vectors read with its width: the first one's rows
are ``x``), the row tensors indexed with ``x``'s rows (a residual) and the tensors the entry adds to
the first of those in Python (``summed``).  Given the per-call :class:`~aiter_norm_guard.kernels.needs.Checks`
(the kernels' needs less what the release does itself), :func:`exit_of` says when the release leaves
before any kernel, :func:`refusal` when no layout can make the kernel right, and :func:`plan` the
canonical tensors (the same object when already right, a view when one exists, else exactly one copy)
with a restore plan.  Knows nothing of sglang or of patching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from aiter_norm_guard.kernels.needs import (
    HOST,
    WEIGHT_DTYPE,
    X_CONTIGUOUS,
    X_POSITIVE,
    X_ROWS,
    X_UNIT_LAST,
    ZERO_ROWS,
    Checks,
)

Tensor = torch.Tensor
Group = tuple[Tensor, Sequence[Tensor]]

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


def fits(t: Tensor, mode: str, row_strided: bool = False) -> bool:
    """Whether ``t``'s own layout is one the kernel reads right under ``mode`` (its rank aside)."""
    if mode == X_ROWS:
        return t.is_contiguous() or (row_strided and is_row_strided(t))
    if mode == X_UNIT_LAST:
        return t.dim() < 1 or t.stride(-1) == 1 or t.size(-1) == 1
    if mode == X_CONTIGUOUS:
        return t.is_contiguous()
    return mode != X_POSITIVE or not expanded(t)


def as_rows(t: Tensor, allow_row_stride: bool = False) -> Tensor:
    """``t`` as 2-D ``(-1, hidden)`` rows: the same object if already right, a view if ``t`` is
    contiguous, else exactly one copy."""
    if t.dim() == 2:
        return t if fits(t, X_ROWS, allow_row_stride) else t.contiguous()
    return (t if t.is_contiguous() else t.contiguous()).view(-1, t.size(-1))


def exit_of(x: Tensor, weights: Sequence[Tensor], c: Checks) -> bool:
    """Whether the release itself leaves before any kernel for this call (its zero-row return,
    its host-tensor or weight-dtype route to native), in the order it checks them."""
    if x.dim() == 0:
        return False
    return (
        (ZERO_ROWS in c.exits and x.shape[0] == 0)
        or (HOST in c.exits and not x.is_cuda)
        or (WEIGHT_DTYPE in c.exits and any(w.dtype != x.dtype for w in weights))
    )


def _rows_refusal(x: Tensor, rows: Sequence[Tensor], summed: Sequence[Tensor], c: Checks, several: bool) -> str | None:
    """The row tensors against ``x`` (several groups: as the kernel indexes them, x's shape and, where read so,
    dtype).  One group: where the release reshapes x, the residual and the summed tensors to ``(-1, n)``
    itself, they are compared as those rows; the summed tensors' sum must still be x's shape and dtype."""
    if several or not c.flattened or x.dim() == 2:
        shape = Tensor.size
    else:
        n = x.shape[-1]

        def shape(t: Tensor) -> torch.Size:
            return torch.Size((t.numel() // n, n)) if n and t.dim() and t.shape[-1] == n else t.shape

    x_shape = shape(x)
    for r in rows:
        if shape(r) != x_shape or (c.rows_dtype and r.dtype != x.dtype):
            try:
                wide = math.prod(torch.broadcast_shapes(x_shape, shape(r))) > x.numel()
            except RuntimeError:  # incompatible: the reference path raises its own error
                wide = False
            return ROWS_EXPAND if wide and not several else ROWS_MISMATCH
    if rows and summed:  # added to the residual in Python: the sum must still be x's shape and dtype
        try:
            sum_shape = torch.broadcast_shapes(shape(rows[0]), *(shape(p) for p in summed))
        except RuntimeError:  # flattened: the release's own sum raises, before its kernel
            return None if c.flattened and x.dim() != 2 else ROWS_MISMATCH
        dtype = rows[0].dtype
        for p in summed:
            dtype = torch.promote_types(dtype, p.dtype)
        if sum_shape != x_shape or dtype != x.dtype:
            return ROWS_EXPAND if math.prod(sum_shape) > x.numel() else ROWS_MISMATCH
    return None


def refusal(
    groups: Sequence[Group], rows: Sequence[Tensor], summed: Sequence[Tensor], c: Checks, hidden: int | None = None
) -> str | None:
    """Why no layout can make the kernels right for these tensors, or None.

    ``groups``: ``(rows tensor, its vectors)``, the first one's rows ``x``; ``rows``: tensors indexed with
    ``x``'s rows (residual); ``summed``: tensors the entry adds to the first of them in Python (post-residual
    addition); ``hidden``: the hidden size the entry reshapes to (else ``x``'s last dimension).
    """
    x = groups[0][0]
    if x.dim() == 0:
        return RANK_ZERO
    if x.shape[-1] != (x.shape[-1] if hidden is None else hidden):
        return HIDDEN_SIZE
    if c.not_2d and any(t.dim() != 2 for t in (*(t for t, _ in groups), *rows)):
        return NOT_2D  # read with n = size(1), m = numel / n: no layout of another rank is read right
    others = (*(t for t, _ in groups[1:]), *(w for _, ws in groups for w in ws), *rows, *summed)
    if (c.host_x and not x.is_cuda) or (c.host_others and not all(t.is_cuda for t in others)):
        return HOST_TENSOR
    if c.nonempty and x.numel() == 0:
        return ZERO
    if any(t.dim() == 0 or (c.same_rows and t.shape[0] != x.shape[0]) for t, _ in groups[1:]):
        return ROWS_MISMATCH
    if c.same_rows or summed:
        reason = _rows_refusal(x, rows, summed, c, len(groups) > 1)
        if reason is not None:
            return reason
    for t, weights in groups:
        for w in weights:
            if c.weight_dtype and w.dtype != t.dtype:
                return DTYPE
            if w.numel() != t.shape[-1]:
                return HIDDEN_SIZE
            if c.weight_stride and not w.is_contiguous():
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


def plan(
    xs: Sequence[Tensor], rows: Sequence[Tensor], summed: Sequence[Tensor], c: Checks, keep_rank: bool = False
) -> Plan | None:
    """The tensors to hand the entry in place of ``(*xs, *rows, *summed)`` (``xs``: every group's rows, x
    first), or None if they already fit.

    With several groups, or ``keep_rank`` (an entry that unpacks a 2-D shape itself), tensors only get the
    layout the kernel reads, never a new rank.  Else, where ``x`` becomes rows, the ``summed`` tensors are
    added to the first row tensor here, as the entry itself adds them (``residual = residual + post``), in
    the caller's shape, so that any broadcast they make is the caller's; they are then left out (None) and
    the sum is viewed as rows: the release's one allocation, no copy.
    """
    x = xs[0]
    given = (*xs, *rows, *summed)
    x_fits = fits(x, c.x, c.row_strided) and (not c.rank2 or x.dim() == 2 or len(xs) > 1)
    if x_fits and all(fits(t, c.x) for t in xs[1:]) and all(fits(r, c.rows) for r in rows):
        return None
    if len(xs) > 1 or keep_rank or not c.reshape:
        mode = X_CONTIGUOUS if keep_rank and c.x == X_ROWS else c.x
        new = tuple(t if fits(t, mode) else t.contiguous() for t in xs)
        new += tuple(r if fits(r, c.rows) else r.contiguous() for r in rows)
        tensors = (*new, *summed)
        shape = x.shape
    else:
        x2 = x if x_fits and x.dim() == 2 else as_rows(x, c.row_strided)
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


def _copies(new: Sequence[Tensor | None], given: Sequence[Tensor]) -> int:
    """How many of ``given`` were copied to make ``new`` (a non-contiguous tensor replaced)."""
    return sum(a is not b and not b.is_contiguous() for a, b in zip(new, given, strict=False))
