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
from aiter_norm_guard.targets.declaration import Fallback


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


def pad_like_release(multiple: int, result: Any) -> Any:
    """A native result as the release's Triton pad path shapes it: the output's last dimension
    zero-padded up to a multiple of ``multiple``; the residual as is."""
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


def pool_of(original: Callable[..., Any], forward_batch: Any) -> Any:
    """The KV pool as the release's method finds it: its module's ``get_token_to_kv_pool()`` (0.5.16+),
    else the forward batch's (0.5.10 - 0.5.15)."""
    get = getattr(original, "__globals__", {}).get("get_token_to_kv_pool")
    return get() if get is not None else forward_batch.token_to_kv_pool


def unfused(original: Callable[..., Any], bound: dict[str, Any], reason: str) -> Any:
    """The release's unfused route for the method's result ``(q, None, None)``: its own
    ``forward_prepare_native`` (q / k norm, RoPE), then K and V stored by the pool's ``set_kv_buffer``
    with the layer's scales, as its attention backend stores them when the fusion is off."""
    attn = next(iter(bound.values()))
    forward_batch = bound["forward_batch"]
    q, k, v = attn.forward_prepare_native(bound["positions"], bound["hidden_states"])
    layer = attn.attn
    heads, d = attn.num_kv_heads, attn.head_dim
    pool = pool_of(original, forward_batch)
    pool.set_kv_buffer(
        layer, forward_batch.out_cache_loc, k.view(-1, heads, d), v.view(-1, heads, d), layer.k_scale, layer.v_scale
    )
    return q, None, None


#: Each declared fallback's function.
FALLBACKS: dict[Fallback, Callable[..., Any]] = {
    Fallback.FP8_PER_TOKEN_QUANT: fp8_per_token_quant,
    Fallback.QUANT_REFUSAL: quant_refusal,
    Fallback.QK_RMSNORM_NATIVE: qk_rmsnorm_native,
    Fallback.DECLINE: decline,
    Fallback.UNFUSED_CACHE_WRITE: unfused,
}
