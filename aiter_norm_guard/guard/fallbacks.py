"""Fallbacks for entries that have no native path of their own.

Each is called as ``fallback(original, bound, reason)`` with the entry's arguments by name
and the :mod:`aiter_norm_guard.guard.layout` reason the kernel cannot take the call as it is.
:func:`pad_like_release` gives a native result the shape RMSNorm's ``x_pad_to_multiple`` path returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard.guard import layout


def fp8_per_token_quant(original: Callable[..., Any], bound: dict[str, Any], reason: str) -> Any:
    """sglang's ``_fused_rmsnorm_fp8_per_token_quant(hidden_states, weight, epsilon, residual=None)``.

    Zero rows: the results the function would build, empty, without a launch.  A weight of
    another dtype or a strided one: the kernel gets it converted to the activation's dtype
    and made contiguous (it reads ``n`` elements of that dtype), and the activation and
    residual contiguous (their layout is checked only after the weight).  Anything else the
    kernel cannot take (a weight of another length, a residual unlike the activation, host
    tensors, the guard's own failure): a ``ValueError``, where the kernel would read past them.
    """
    x: torch.Tensor = bound["hidden_states"]
    residual = bound.get("residual")
    if reason == layout.ZERO and x.dim() == 2:
        m, n = x.shape
        fp8 = original.__globals__.get("_aiter_fp8_dtype", torch.float8_e4m3fnuz)
        out = torch.empty((m, n), dtype=fp8, device=x.device)
        scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)
        if residual is None:
            return (out, scale)
        return (out, scale), torch.empty_like(x)
    if reason in (layout.DTYPE, layout.STRIDED_WEIGHT):
        fixed = {"weight": bound["weight"].to(x.dtype).contiguous(), "hidden_states": x.contiguous()}
        if residual is not None:
            fixed["residual"] = residual.contiguous()
        return original(**{**bound, **fixed})
    if reason != layout.RANK_ZERO:  # a 0-dim activation: the function's own unpacking error
        raise ValueError(
            f"_fused_rmsnorm_fp8_per_token_quant: {reason} (hidden_states {tuple(x.shape)} {x.dtype}, "
            f"weight {tuple(bound['weight'].shape)}, residual "
            f"{None if residual is None else (tuple(residual.shape), residual.dtype)})"
        )
    return original(**bound)


def pad_like_release(module: Any, result: Any) -> Any:
    """``forward_native``'s result as the release's Triton pad path shapes it: the output's last
    dimension zero-padded up to a multiple of ``module.x_pad_to_multiple``; the residual as is."""
    multiple = int(module.__dict__.get("x_pad_to_multiple", 0))
    out = result[0] if isinstance(result, tuple) else result
    n = out.shape[-1]
    padded = torch.nn.functional.pad(out, (0, -(-n // multiple) * multiple - n)) if multiple > 0 else out
    return (padded, *result[1:]) if isinstance(result, tuple) else padded


def decline(original: Callable[..., Any], bound: dict[str, Any], reason: str) -> None:
    """The all-reduce fusion's own answer when it cannot run: None (its callers take the unfused route)."""
    return None


def qk_rmsnorm_native(original: Callable[..., Any], bound: dict[str, Any], reason: str) -> Any:
    """``fused_qk_rmsnorm_bf16(q, q_weight, q_eps, k, k_weight, k_eps) -> (q_out, k_out)`` computed
    as sglang's ``RMSNorm.forward_native`` does (``cast_x_before_out_mul`` off): in fp32, each of
    q and k with its own weight and epsilon; contiguous results, as the kernel's."""

    def norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        s = x.contiguous().to(torch.float32)
        s = s * torch.rsqrt(s.pow(2).mean(dim=-1, keepdim=True) + eps)
        return (s * w).to(x.dtype)

    return norm(bound["q"], bound["q_weight"], bound["q_eps"]), norm(bound["k"], bound["k_weight"], bound["k_eps"])


def quant_refusal(original: Callable[..., Any], bound: dict[str, Any], reason: str) -> Any:
    """aiter's Triton fused RMSNorm + quant has no native path in sglang: a clear error instead of a
    kernel that would read past a weight or a row tensor (or dereference host memory)."""
    shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in bound.items() if isinstance(v, torch.Tensor)}
    raise ValueError(f"{getattr(original, '__name__', 'fused RMSNorm + quant')}: {reason} ({shapes})")
