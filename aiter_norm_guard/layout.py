"""Pure layout logic: the rows aiter's RMSNorm kernel can read, and how to give results back.

aiter's HIP kernel takes ``n = size(1)``, ``m = numel // n`` and ``stride(0)`` as the
row pitch, assumes a unit last stride, reads the weight in the activation's dtype and
cannot launch zero rows.  This module turns any activation into that form — the same
object when it already is, a view when one exists, else exactly one copy — and keeps
the plan to restore each caller's shape.  It knows nothing of sglang or of patching.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

Tensor = torch.Tensor


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


def needs_reference(x: Tensor, weight_dtype: torch.dtype, residual: Tensor | None, post: Tensor | None) -> bool:
    """True where no layout can make the kernel right, so the reference path must run.

    Zero elements (the kernel cannot launch an empty grid), rank 0, a weight or a
    residual whose dtype differs from the activation's (the kernel reads them in the
    activation's dtype), or a residual / post-residual addition that does not match
    ``x`` element for element (the kernel indexes them with ``x``'s rows).
    """
    if x.dim() == 0 or x.numel() == 0 or x.dtype != weight_dtype:
        return True
    if residual is None:
        return False
    for r in (residual, post) if post is not None else (residual,):
        if r.dtype != x.dtype or r.numel() != x.numel() or r.size(-1) != x.size(-1):
            return True
    return False


class RowsPlan(NamedTuple):
    """Canonical tensors for the kernel, and the caller shapes to restore."""

    x: Tensor
    residual: Tensor | None
    post: Tensor | None
    x_shape: torch.Size | None
    residual_shape: torch.Size | None

    def restore(self, result: object) -> object:
        """Give the original's result back in each caller's shape."""
        if self.residual is None:
            if self.x_shape is not None and isinstance(result, Tensor):
                return result.view(self.x_shape)
            return result
        if isinstance(result, tuple) and len(result) == 2:
            out, res_out = result
            if self.x_shape is not None and isinstance(out, Tensor):
                out = out.view(self.x_shape)
            if self.residual_shape is not None and isinstance(res_out, Tensor):
                res_out = res_out.view(self.residual_shape)
            return out, res_out
        return result


def plan_rows(x: Tensor, residual: Tensor | None, post: Tensor | None, allow_row_stride: bool = False) -> RowsPlan:
    """Canonicalize ``x``, ``residual`` and ``post`` (post only with a residual).

    Shapes are kept for restoring only where a tensor was not 2-D already.
    """
    x2 = as_rows(x, allow_row_stride)
    if residual is None:
        return RowsPlan(x2, None, post, None if x.dim() == 2 else x.shape, None)
    r2 = as_rows(residual)
    p2 = as_rows(post) if post is not None else None
    return RowsPlan(
        x2,
        r2,
        p2,
        None if x.dim() == 2 else x.shape,
        None if residual.dim() == 2 and residual.shape == x2.shape else residual.shape,
    )
