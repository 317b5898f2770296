"""Triton kernels written to aiter's contracts: the kernel double on a CUDA GPU.

The same contracts as ``aiter_norm_guard.emulation.kernel`` (aiter <= v0.1.17's routing), on
raw device pointers: HIP ``rmsnorm`` / ``add_rmsnorm`` / ``rmsnorm_quant`` take ``n = size(1)``,
``m = numel // n`` and each tensor's ``stride(0)`` as its row pitch, assume a unit last stride,
and read the weight through a pointer of the activation's dtype with no length check; CK
``layernorm2d`` takes ``n = size(-1)``; zero rows raise "invalid configuration argument"; the
Triton ``fused_add_rmsnorm_pad`` reads both strides and the weight in its own dtype.  A bad
layout therefore really reads and writes outside its tensor.  The entry points are custom ops,
as aiter registers its own, so ``torch.compile`` keeps them opaque.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from aiter_norm_guard.emulation.kernel import QUANT_PARAMS, aiter_entry
from aiter_norm_guard.emulation.rope_cache import cache_write_entries
from aiter_norm_guard.kernels.form import CacheWrite
from aiter_norm_guard.kernels.rope_cache import FUSED_QK_NORM_MROPE_CACHE

HALF = (torch.bfloat16, torch.float16)
FP8 = torch.float8_e4m3fnuz if hasattr(torch, "float8_e4m3fnuz") else torch.float8_e4m3fn


@triton.jit
def _rows(
    x_ptr,
    r_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    rout_ptr,
    scale_ptr,
    x_pitch,
    r_pitch,
    out_pitch,
    rout_pitch,
    n,
    eps,
    qmax,
    ADD: tl.constexpr,
    LAYER: tl.constexpr,
    QUANT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    keep = cols < n
    s = tl.load(x_ptr + row * x_pitch + cols, mask=keep, other=0.0).to(tl.float32)
    if ADD:
        s += tl.load(r_ptr + row * r_pitch + cols, mask=keep, other=0.0).to(tl.float32)
        tl.store(rout_ptr + row * rout_pitch + cols, s.to(rout_ptr.dtype.element_ty), mask=keep)
    w = tl.load(w_ptr + cols, mask=keep, other=0.0).to(tl.float32)
    if LAYER:
        mean = tl.sum(s, 0) / n
        d = tl.where(keep, s - mean, 0.0)
        y = d * tl.rsqrt(tl.sum(d * d, 0) / n + eps) * w + tl.load(b_ptr + cols, mask=keep, other=0.0).to(tl.float32)
    else:
        y = s * tl.rsqrt(tl.sum(s * s, 0) / n + eps) * w
    if QUANT:
        scale = tl.maximum(tl.max(tl.abs(y), 0) / qmax, 1e-10)
        tl.store(scale_ptr + row, scale)
        y = y / scale
    tl.store(out_ptr + row * out_pitch + cols, y.to(out_ptr.dtype.element_ty), mask=keep)


@triton.jit
def _pad_rows(
    x_ptr,
    r_ptr,
    w_ptr,
    out_ptr,
    rout_ptr,
    xs0,
    xs1,
    rs0,
    rs1,
    os0,
    ros0,
    n,
    n_out,
    eps,
    ADD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    keep = cols < n
    s = tl.load(x_ptr + row * xs0 + cols * xs1, mask=keep, other=0.0).to(tl.float32)
    if ADD:
        s += tl.load(r_ptr + row * rs0 + cols * rs1, mask=keep, other=0.0).to(tl.float32)
        tl.store(rout_ptr + row * ros0 + cols, s.to(rout_ptr.dtype.element_ty), mask=keep)
    w = tl.load(w_ptr + cols, mask=keep, other=0.0).to(tl.float32)
    y = s * tl.rsqrt(tl.sum(s * s, 0) / n + eps) * w
    tl.store(out_ptr + row * os0 + cols, y.to(out_ptr.dtype.element_ty), mask=cols < n_out)


def _grid(t: torch.Tensor, last: bool = False) -> tuple[int, int]:
    n = t.size(-1) if last else t.size(1)
    m = t.numel() // n if n else 0
    if m == 0:
        raise RuntimeError("HIP error: invalid configuration argument (empty grid)")
    if t.dtype not in HALF:
        raise RuntimeError(f"not support output type: {t.dtype}")
    return m, n


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor's memory through a pointer of ``dtype`` (a raw pointer cast; flattened so any
    stride views as bytes)."""
    if t.dtype == dtype:
        return t
    return t.reshape(-1).view(torch.uint8)[: t.numel() * t.element_size()].view(dtype)


def _launch(
    m: int,
    n: int,
    x: torch.Tensor,
    w: torch.Tensor,
    out: torch.Tensor,
    eps: float,
    r: torch.Tensor | None = None,
    rout: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    qmax: float = 1.0,
    flat: bool = False,
) -> None:
    """One launch of the row kernel: each tensor's stride(0) as its pitch, or ``n`` for all (``flat``)."""
    dt = x.dtype
    pitch = (lambda t: n) if flat else (lambda t: t.stride(0))
    _rows[(m,)](
        x,
        _as(r, dt) if r is not None else x,
        _as(w, dt),
        _as(b, dt) if b is not None else w,
        out,
        _as(rout, dt) if rout is not None else out,
        scale if scale is not None else out,
        pitch(x),
        pitch(r) if r is not None else 0,
        pitch(out),
        pitch(rout) if rout is not None else 0,
        n,
        eps,
        qmax,
        ADD=r is not None,
        LAYER=b is not None,
        QUANT=scale is not None,
        BLOCK=triton.next_power_of_2(n),
    )


@torch.library.custom_op("aiter_double::rmsnorm2d_fwd", mutates_args=())
def rmsnorm2d_fwd(input: torch.Tensor, weight: torch.Tensor, epsilon: float) -> torch.Tensor:
    out = torch.empty_like(input)
    m, n = _grid(input)
    _launch(m, n, input, weight, out, epsilon)
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
    _launch(m, n, input, weight, out, epsilon, residual_in, residual_out)


@torch.library.custom_op("aiter_double::layernorm2d_fwd", mutates_args=())
def layernorm2d_fwd(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epsilon: float) -> torch.Tensor:
    out = torch.empty_like(input)
    m, n = _grid(input, last=True)
    _launch(m, n, input, weight, out, epsilon, b=bias)
    return out


@layernorm2d_fwd.register_fake
def _(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, epsilon: float) -> torch.Tensor:
    return torch.empty_like(input)


def _fp8_rows(out: torch.Tensor, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An fp32 stand-in for ``out`` (Triton cannot store every fp8 flavour on every arch), and
    ``out``'s rows as the kernel addresses them (its ``stride(0)`` as the pitch)."""
    tmp = torch.empty((m, out.stride(0)), dtype=torch.float32, device=out.device)
    return tmp, out.as_strided((m, n), (out.stride(0), 1))


def _quant(a: dict[str, Any]) -> None:
    """``rmsnorm_quant`` / ``add_rmsnorm_quant`` (``a``: the call's arguments by name)."""
    out, inp = a["out"], a["input"]
    m, n = _grid(inp)
    tmp, rows = _fp8_rows(out, m, n)
    res = (a.get("residual_in"), a.get("residual_out"))
    _launch(m, n, inp, a["weight"], tmp, a["epsilon"], *res, scale=a["scale"], qmax=torch.finfo(out.dtype).max)
    rows.copy_(tmp[:, :n].to(out.dtype))


rmsnorm_quant = aiter_entry("rmsnorm_quant", f"out, input, {QUANT_PARAMS}", _quant)
add_rmsnorm_quant = aiter_entry("add_rmsnorm_quant", f"out, input, residual_in, residual_out, {QUANT_PARAMS}", _quant)


def fused_add_rmsnorm_pad(
    x: torch.Tensor, weight: torch.Tensor, epsilon: float, res: torch.Tensor | None = None, x_pad_to_multiple: int = 0
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    m, n = x.shape
    n_out = triton.cdiv(n, x_pad_to_multiple) * x_pad_to_multiple if x_pad_to_multiple > 0 else n
    out = torch.empty((m, n_out), dtype=x.dtype, device=x.device)
    res_out = None
    if res is not None:
        assert res.shape == (m, n), "Shape error!"
        res_out = torch.empty((m, n), dtype=res.dtype, device=res.device)
    if m:  # Triton skips an empty grid
        _pad_rows[(m,)](
            x,
            res if res is not None else x,
            weight,
            out,
            res_out if res_out is not None else out,
            x.stride(0),
            x.stride(1),
            res.stride(0) if res is not None else 0,
            res.stride(1) if res is not None else 0,
            out.stride(0),
            res_out.stride(0) if res_out is not None else 0,
            n,
            n_out,
            epsilon,
            ADD=res is not None,
            BLOCK=triton.next_power_of_2(n_out),
        )
    return (out, res_out) if res_out is not None else out


def fused_qk_rmsnorm(
    q: torch.Tensor, q_weight: torch.Tensor, q_eps: float, k: torch.Tensor, k_weight: torch.Tensor, k_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """aiter's fused_qk_rmsnorm (aiter_norm_guard.kernels.attention): m = q.size(0) for q and k alike,
    n = size(1) each, rows through each stride(0), weights of unchecked length; the AITER_CHECKs on
    rank and dtype; from m >= 16384 the HIP rmsnorm on each, with none of them."""
    m = q.size(0)
    if m < 16384:
        if q.dim() != 2 or k.dim() != 2 or not (q.dtype == k.dtype == q_weight.dtype == k_weight.dtype):
            raise RuntimeError("fused_qk_rmsnorm: q, k 2-D of one dtype with their weights (AITER_CHECK)")
    if m == 0:
        raise RuntimeError("HIP error: invalid configuration argument (empty grid)")
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    _launch(m, q.size(1), q, q_weight, q_out, q_eps)
    _launch(m, k.size(1), k, k_weight, k_out, k_eps)
    return q_out, k_out


class TritonCustomAllreduce:
    """aiter's CustomAllreduce fused path on one GPU (aiter_norm_guard.kernels.allreduce): n = w.numel(),
    m = numel // n, the input, residuals and outputs read and written flat from their pointers."""

    disabled = False

    def custom_fused_ar_rms(
        self, inp: torch.Tensor, res_inp: torch.Tensor, w: torch.Tensor, eps: float, use_1stage: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = w.numel()
        m = inp.numel() // n
        if m == 0:
            raise RuntimeError("HIP error: invalid configuration argument (empty grid)")
        out, res_out = torch.empty_like(inp), torch.empty_like(inp)
        _launch(m, n, inp, w, out, eps, res_inp, res_out, flat=True)  # one rank: the all-reduce is the input
        return out, res_out

    fused_ar_rms = custom_fused_ar_rms


class TritonAiter:
    """The entry points by aiter's names, as ``aiter_norm_guard.emulation.rocm`` assembles them."""

    build = "legacy"
    rmsnorm2d_fwd = staticmethod(rmsnorm2d_fwd)
    rmsnorm2d_fwd_with_add = staticmethod(rmsnorm2d_fwd_with_add)
    rmsnorm_quant = staticmethod(rmsnorm_quant)
    add_rmsnorm_quant = staticmethod(add_rmsnorm_quant)
    fused_add_rmsnorm_pad = staticmethod(fused_add_rmsnorm_pad)
    fused_qk_rmsnorm = staticmethod(fused_qk_rmsnorm)

    @staticmethod
    def layernorm2d_fwd(
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        epsilon: float = 1e-5,
        x_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return layernorm2d_fwd(input, weight, bias, epsilon)  # type: ignore[no-any-return]

    def _log(self, name: str, **tensors: object) -> bool:  # what the emulation's other doubles ask of us
        return True


@triton.jit
def _qk_norm_rope_cache(
    qkv_ptr,
    qw_ptr,
    kw_ptr,
    cs_ptr,
    pos_ptr,
    ps0,
    ps1,
    q_ptr,
    kc_ptr,
    vc_ptr,
    slot_ptr,
    k_tok,
    k_head,
    v_tok,
    v_head,
    hq,
    hk,
    eps,
    k_scale,
    v_scale,
    s0,
    s1,
    D: tl.constexpr,
    HALF: tl.constexpr,
    MROPE: tl.constexpr,
):
    """One (token, head) per program, as rope_common.h's fused_mrope_rms_kv_kernel (neox, block_size 0): qkv
    read flat, weights as D elements of qkv's dtype, cos_sin[pos * D + i], K / V stored at slot * tok + head
    * head_stride (the cache's own strides: aiter since #4531 / #4312)."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    heads = hq + 2 * hk
    i = tl.arange(0, D)
    x = tl.load(qkv_ptr + (t * heads + h) * D + i).to(tl.float32)
    slot = tl.load(slot_ptr + t)
    if h >= hq + hk:  # V: stored as read
        if slot >= 0:
            tl.store(vc_ptr + slot * v_tok + (h - hq - hk) * v_head + i, (x / v_scale).to(vc_ptr.dtype.element_ty))
        return
    w = tl.load(tl.where(h < hq, qw_ptr, kw_ptr) + i).to(tl.float32)
    y = (x * tl.rsqrt(tl.sum(x * x, 0) / D + eps) * w).to(qkv_ptr.dtype.element_ty).to(tl.float32)
    j = i % HALF
    if MROPE:
        row = tl.where(j < s0, 0, tl.where(j < s0 + s1, 1, 2))
    else:
        row = j * 0
    p = tl.load(pos_ptr + row * ps0 + t * ps1)
    cos = tl.load(cs_ptr + p * D + j).to(tl.float32)
    sin = tl.load(cs_ptr + p * D + HALF + j).to(tl.float32)
    other = tl.load(qkv_ptr + (t * heads + h) * D + (i + HALF) % D).to(tl.float32)
    wo = tl.load(tl.where(h < hq, qw_ptr, kw_ptr) + (i + HALF) % D).to(tl.float32)
    yo = (other * tl.rsqrt(tl.sum(x * x, 0) / D + eps) * wo).to(qkv_ptr.dtype.element_ty).to(tl.float32)
    out = tl.where(i < HALF, y * cos - yo * sin, y * cos + yo * sin)
    if h < hq:
        tl.store(q_ptr + (t * hq + h) * D + i, out.to(q_ptr.dtype.element_ty))
    elif slot >= 0:
        tl.store(kc_ptr + slot * k_tok + (h - hq) * k_head + i, (out / k_scale).to(kc_ptr.dtype.element_ty))


def _cache_write(contract: CacheWrite, a: dict[str, Any]) -> None:
    """The host code of aiter HEAD (aiter_norm_guard.kernels.rope_cache): its AITER_CHECKs, the scales read on
    the host, the caches' stride(1) / stride(2) as token / head strides, an empty grid for zero tokens."""
    names = ("qkv", "qw", "kw", "positions", "k_cache", "v_cache", "slot_mapping", "head_size", "num_tokens")
    qkv, qw, kw, positions, k_cache, v_cache, slot_mapping, head_size, num_tokens = (a[k] for k in names)
    num_heads_k = a["num_heads_k"]
    sections = a.get("mrope_section_")
    if contract is FUSED_QK_NORM_MROPE_CACHE:
        if positions.dim() != 2 or len(sections) != 3 or a["is_interleaved"] or not a["is_neox_style"]:
            raise RuntimeError("this double: 2-D positions, 3 sections, neox, not interleaved")
        sections = list(sections)
    elif positions.dim() != 1 or not a["is_neox_style"]:
        raise RuntimeError("this double: 1-D positions, neox")
    if head_size not in (64, 128, 256):
        raise RuntimeError("head_size in {64, 128, 256} (AITER_CHECK)")
    if not (qkv.is_contiguous() and qw.is_contiguous() and kw.is_contiguous() and slot_mapping.is_contiguous()):
        raise RuntimeError("qkv / qw / kw / slot_mapping contiguous (AITER_CHECK)")
    if num_tokens == 0:
        raise RuntimeError("HIP error: invalid configuration argument (empty grid)")
    ks, vs = float(a["per_tensor_k_scale"].item()), float(a["per_tensor_v_scale"].item())  # the host dereference
    strides = [c.stride(1) if c.dim() >= 2 else num_heads_k * head_size for c in (k_cache, v_cache)]
    heads = [c.stride(2) if c.dim() >= 3 else head_size for c in (k_cache, v_cache)]
    ps0, ps1 = (positions.stride(0), positions.stride(1)) if positions.dim() == 2 else (0, positions.stride(0))
    s = sections or [0, 0, 0]
    _qk_norm_rope_cache[(num_tokens, a["num_heads_q"] + 2 * num_heads_k)](
        qkv,
        _as(qw, qkv.dtype),
        _as(kw, qkv.dtype),
        a["cos_sin"],
        positions,
        ps0,
        ps1,
        a["q_out"],
        k_cache,
        v_cache,
        slot_mapping,
        strides[0],
        heads[0],
        strides[1],
        heads[1],
        a["num_heads_q"],
        num_heads_k,
        a["eps"],
        ks,
        vs,
        s[0],
        s[1],
        D=head_size,
        HALF=head_size // 2,
        MROPE=sections is not None,
    )


for _name, _entry in cache_write_entries(_cache_write).items():
    setattr(TritonAiter, _name, staticmethod(_entry))
