"""The guarded ``forward_aiter``: a plain function wrapping the release's original.

For the known signatures (``x, residual`` and ``x, residual, post_residual_addition``)
the wrapper mirrors the original's parameters, so the common safe call — 2-D
contiguous tensors of the weight's dtype — costs a few C-level checks and one Python
call; a residual-free call in an unsafe layout goes through :func:`_rows_call` (one copy or
a view, then the original).  Everything else goes through :func:`_slow_call`, which canonicalizes with
:mod:`aiter_norm_guard.layout` or routes to the module's own ``forward_native``.
A failure inside the guard's own work logs once and makes the original call as it
was, so the guard never turns the original's behaviour into another one.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard._marker import WRAPPED_ATTR
from aiter_norm_guard.layout import as_rows, needs_reference, plan_rows

Tensor = torch.Tensor
Forward = Callable[..., Any]
POST = "post_residual_addition"
__all__ = ["WRAPPED_ATTR", "make_guarded_forward", "signature_kind", "weight_dtype"]


def _internal_error() -> None:
    log_once(
        "guard-internal-error",
        logging.WARNING,
        "aiter_norm_guard: internal error while canonicalizing; passing the call through",
        exc_info=True,
    )


def weight_dtype(module: Any) -> torch.dtype | None:
    """The module's weight dtype, avoiding ``nn.Module.__getattr__`` on the common path."""
    try:
        return module._parameters["weight"].dtype  # type: ignore[no-any-return]
    except (KeyError, AttributeError, TypeError):
        w = getattr(module, "weight", None)
        return w.dtype if isinstance(w, Tensor) else None


def _slow_call(
    original: Forward,
    allow_row_stride: bool,
    has_post: bool,
    module: Any,
    x: Any,
    residual: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Canonicalize, route to ``forward_native``, or pass the call through untouched."""
    post_in_args = has_post and len(args) > 0
    post = args[0] if post_in_args else (kwargs.get(POST) if has_post else None)
    try:
        used_post = post if residual is not None else None
        if isinstance(x, Tensor) and all(t is None or isinstance(t, Tensor) for t in (residual, used_post)):
            wdt = weight_dtype(module)
            if needs_reference(x, x.dtype if wdt is None else wdt, residual, used_post):
                return module.forward_native(x, residual) if post is None else module.forward_native(x, residual, post)
            plan = plan_rows(x, residual, used_post, allow_row_stride)
        else:
            plan = None
    except Exception:  # the guard's own failure: keep sglang's behaviour
        _internal_error()
        plan = None
    if plan is None:
        return original(module, x, residual, *args, **kwargs)
    if used_post is not None:
        if post_in_args:
            args = (plan.post, *args[1:])
        else:
            kwargs = {**kwargs, POST: plan.post}
    return plan.restore(original(module, plan.x, plan.residual, *args, **kwargs))


def signature_kind(original: Forward) -> tuple[str, bool]:
    """The wrapper shape for ``original``, and whether it takes ``post_residual_addition``.

    ``"x_residual"`` / ``"x_residual_post"`` for the exact parameter lists of released
    sglang (all defaults ``None``), ``"generic"`` for anything else.
    """
    try:
        params = list(inspect.signature(original).parameters.values())
    except (TypeError, ValueError):
        return "generic", False
    names = [p.name for p in params]
    has_post = len(names) > 3 and names[3] == POST and params[3].kind is params[3].POSITIONAL_OR_KEYWORD
    plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and (i < 2 or p.default is None) for i, p in enumerate(params))
    if plain and names == ["self", "x", "residual"]:
        return "x_residual", False
    if plain and names == ["self", "x", "residual", POST]:
        return "x_residual_post", True
    return "generic", has_post


def _rows_call(
    original: Forward, allow_row_stride: bool, module: Any, x: Tensor, tail: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """No residual, kernel-compatible dtype and size, unsafe layout: canonicalize ``x`` only."""
    try:
        rows = as_rows(x, allow_row_stride)
    except Exception:  # the guard's own failure: keep sglang's behaviour
        _internal_error()
        return original(module, x, None, *tail, **kwargs)
    out = original(module, rows, None, *tail, **kwargs)
    return out.view(x.shape) if rows is not x and isinstance(out, Tensor) else out


def make_guarded_forward(original: Forward, allow_row_stride: bool = False) -> Forward:
    """Build the guarded replacement for ``RMSNorm.forward_aiter``.

    The result is a plain function (``functools.update_wrapper`` of the original), so
    ``torch.compile`` traces through it, and carries the original under
    :data:`WRAPPED_ATTR` for uninstall.  On every path the first checks are the
    cheapest C-level ones: ``rank`` is ``x.dim()`` where the kernel can take these values
    in some layout (non-empty, weight of the activation's dtype) and 0 where it cannot
    (or ``x`` is 0-d or not a tensor), which sends the call to the slow path.
    """
    kind, has_post = signature_kind(original)

    def slow(module: Any, x: Any, residual: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return _slow_call(original, allow_row_stride, has_post, module, x, residual, args, kwargs)

    if kind == "x_residual":

        def guarded(self: Any, x: Any, residual: Any = None) -> Any:
            try:
                rank = x.numel() and x.dtype is self._parameters["weight"].dtype and x.dim()
            except Exception:
                rank = 0
            if rank:
                if residual is None:
                    if rank == 2 and x.is_contiguous():
                        return original(self, x)
                    return _rows_call(original, allow_row_stride, self, x, (), {})
                if (
                    rank == 2
                    and x.is_contiguous()
                    and residual.is_contiguous()
                    and residual.dtype is x.dtype
                    and residual.shape == x.shape
                ):
                    return original(self, x, residual)
            return slow(self, x, residual, (), {})

    elif kind == "x_residual_post":

        def guarded(self: Any, x: Any, residual: Any = None, post_residual_addition: Any = None) -> Any:  # type: ignore[misc]
            try:
                rank = x.numel() and x.dtype is self._parameters["weight"].dtype and x.dim()
            except Exception:
                rank = 0
            if rank:
                if residual is None:
                    if rank == 2 and x.is_contiguous():
                        return original(self, x, None, post_residual_addition)
                    return _rows_call(original, allow_row_stride, self, x, (post_residual_addition,), {})
                if (
                    post_residual_addition is None
                    and rank == 2
                    and x.is_contiguous()
                    and residual.is_contiguous()
                    and residual.dtype is x.dtype
                    and residual.shape == x.shape
                ):
                    return original(self, x, residual)
            return slow(self, x, residual, (post_residual_addition,), {})

    else:

        def guarded(self: Any, x: Any, residual: Any = None, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            try:
                rank = residual is None and x.numel() and x.dtype is self._parameters["weight"].dtype and x.dim()
            except Exception:
                rank = 0
            if rank:
                if rank == 2 and x.is_contiguous():
                    return original(self, x, None, *args, **kwargs)
                return _rows_call(original, allow_row_stride, self, x, args, kwargs)
            return slow(self, x, residual, args, kwargs)

    functools.update_wrapper(guarded, original)
    setattr(guarded, WRAPPED_ATTR, original)
    return guarded
