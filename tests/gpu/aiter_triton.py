"""A Triton RMSNorm written to aiter's HIP contract, as the kernel double on a CUDA GPU.

``n = size(1)``, ``m = numel // n``, row pitch ``stride(0)`` for every tensor, a unit last
stride assumed, raw pointer arithmetic with no masking beyond ``n``, the weight's bytes
read in the activation's dtype, and an error for an empty grid.  A bad layout therefore
really reads (and writes) outside its tensor.  The kernels are registered as custom ops,
as aiter registers its own, so ``torch.compile`` treats them as opaque.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_rows(x_ptr, w_ptr, out_ptr, x_pitch, out_pitch, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    keep = cols < n
    x = tl.load(x_ptr + row * x_pitch + cols, mask=keep, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=keep, other=0.0).to(tl.float32)
    y = x * tl.rsqrt(tl.sum(x * x, 0) / n + eps) * w
    tl.store(out_ptr + row * out_pitch + cols, y.to(out_ptr.dtype.element_ty), mask=keep)


@triton.jit
def _add_rms_rows(
    x_ptr, r_ptr, w_ptr, out_ptr, rout_ptr, x_pitch, r_pitch, out_pitch, rout_pitch, n, eps, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    keep = cols < n
    x = tl.load(x_ptr + row * x_pitch + cols, mask=keep, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + row * r_pitch + cols, mask=keep, other=0.0).to(tl.float32)
    s = x + r
    tl.store(rout_ptr + row * rout_pitch + cols, s.to(rout_ptr.dtype.element_ty), mask=keep)
    w = tl.load(w_ptr + cols, mask=keep, other=0.0).to(tl.float32)
    y = s * tl.rsqrt(tl.sum(s * s, 0) / n + eps) * w
    tl.store(out_ptr + row * out_pitch + cols, y.to(out_ptr.dtype.element_ty), mask=keep)


def _grid(t: torch.Tensor) -> tuple[int, int]:
    n = t.size(1)
    m = t.numel() // n if n else 0
    if m == 0:
        raise RuntimeError("HIP error: invalid configuration argument (empty grid)")
    return m, n


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor's memory read through a pointer of ``dtype`` (a raw pointer cast)."""
    return t if t.dtype == dtype else t.view(dtype)


@torch.library.custom_op("aiter_double::rmsnorm2d_fwd", mutates_args=())
def rmsnorm2d_fwd(input: torch.Tensor, weight: torch.Tensor, epsilon: float) -> torch.Tensor:
    out = torch.empty_like(input)
    m, n = _grid(input)
    _rms_rows[(m,)](
        input,
        _as(weight, input.dtype),
        out,
        input.stride(0),
        out.stride(0),
        n,
        epsilon,
        BLOCK=triton.next_power_of_2(n),
    )
    return out


@rmsnorm2d_fwd.register_fake
def _(input: torch.Tensor, weight: torch.Tensor, epsilon: float) -> torch.Tensor:
    return torch.empty_like(input)


@torch.library.custom_op("aiter_double::rmsnorm2d_fwd_with_add", mutates_args=("out", "residual_out"))
def rmsnorm2d_fwd_with_add(
    out: torch.Tensor,
    input: torch.Tensor,
    residual_in: torch.Tensor,
    residual_out: torch.Tensor,
    weight: torch.Tensor,
    epsilon: float,
) -> None:
    m, n = _grid(input)
    dt = input.dtype
    _add_rms_rows[(m,)](
        input,
        _as(residual_in, dt),
        _as(weight, dt),
        out,
        _as(residual_out, dt),
        input.stride(0),
        residual_in.stride(0),
        out.stride(0),
        residual_out.stride(0),
        n,
        epsilon,
        BLOCK=triton.next_power_of_2(n),
    )


@rmsnorm2d_fwd_with_add.register_fake
def _(
    out: torch.Tensor,
    input: torch.Tensor,
    residual_in: torch.Tensor,
    residual_out: torch.Tensor,
    weight: torch.Tensor,
    epsilon: float,
) -> None:
    return None
