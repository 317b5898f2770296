"""Doubles of aiter's fused q / k RMSNorm + RoPE + KV-cache write (1-D and mrope), from their contracts.

Memory is read as :mod:`aiter_norm_guard.kernels.rope_cache` says the kernel reads it: ``qkv`` and
``q_out`` flat, the norm weights as ``D`` elements of the activation's dtype, positions and slots as
int64 at their pointers, the scales on the host, and K / V stored at the address the chosen aiter
build computes (``cache_build``: ``strides``, aiter since #4531 / #4312, or ``contiguous``, before):
a cache the build misreads is written to the wrong cells, silently, as on hardware.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard.emulation.kernel import AiterKernelDouble, aiter_entry, rms
from aiter_norm_guard.emulation.kernel import aiter_check as _check
from aiter_norm_guard.emulation.memory import (
    InvalidConfiguration,
    KernelCrash,
    MemoryAccessFault,
    at,
    base,
    flat,
    vector,
)
from aiter_norm_guard.kernels.form import SLOT_HEAD_CONTIGUOUS, SLOT_HEAD_STRIDES, CacheWrite
from aiter_norm_guard.kernels.rope_cache import FUSED_QK_NORM_MROPE_CACHE, FUSED_QK_NORM_ROPE_CACHE

Tensor = torch.Tensor
CACHE_BUILDS = {"strides": SLOT_HEAD_STRIDES, "contiguous": SLOT_HEAD_CONTIGUOUS}


def _int64_at(t: Tensor, index: Tensor) -> Tensor:
    """int64 values at ``t``'s pointer plus ``index`` (elements of int64), whatever ``t``'s dtype."""
    mem, index = at(t, torch.int64, index, "an int64 read past its storage")
    return mem[index]


_HEAD = "qkv, qw, kw, cos_sin, positions, num_tokens, num_heads_q, num_heads_k, num_heads_v, head_size, is_neox_style"
_TAIL = "eps, q_out, k_cache, v_cache, slot_mapping, per_tensor_k_scale, per_tensor_v_scale, k_out, v_out, return_kv, "
#: aiter's parameters of each contract's entry point (this double's and tests/gpu/aiter_triton.py's).
PARAMS = {
    FUSED_QK_NORM_ROPE_CACHE: f"{_HEAD}, {_TAIL}use_shuffle_layout, block_size, x, rotary_dim=0",
    FUSED_QK_NORM_MROPE_CACHE: f"{_HEAD}, mrope_section_, is_interleaved, {_TAIL}use_shuffle_layout, block_size, x, "
    "rotary_dim=0, gemma_norm=False",
}


def cache_write_entries(run: Callable[[CacheWrite, dict[str, Any]], None]) -> dict[str, Callable[..., None]]:
    """Both entry points by aiter's name, with aiter's parameters, each handing ``run`` its contract and the call's
    arguments by name."""
    names = {c: c.name.removeprefix("aiter ") for c in PARAMS}
    return {names[c]: aiter_entry(names[c], p, functools.partial(run, c)) for c, p in PARAMS.items()}


class CacheWriteDouble:
    """``fused_qk_norm_rope_cache_pts_quant_shuffle`` and ``fused_qk_norm_mrope_3d_cache_pts_quant_shuffle``,
    logging into ``kernels``' call list."""

    def __init__(self, kernels: AiterKernelDouble, cache_build: str = "strides") -> None:
        self.kernels, self.cache_build = kernels, cache_build
        vars(self).update(cache_write_entries(self._run))

    def _run(self, contract: CacheWrite, a: dict[str, Any]) -> None:
        mrope = "mrope_section_" in a
        if mrope:
            _check(len(a["mrope_section_"]) == 3, "mrope_section_.size() == 3")
        _check(a["positions"].dim() == contract.positions_rank, f"positions.dim() == {contract.positions_rank}")
        sections, interleaved = (list(a["mrope_section_"]), a["is_interleaved"]) if mrope else (None, False)
        qkv, k_cache, v_cache = a["qkv"], a["k_cache"], a["v_cache"]
        if not self.kernels._log(
            contract.name.removeprefix("aiter "),
            qkv=qkv,
            qw=a["qw"],
            kw=a["kw"],
            positions=a["positions"],
            k_cache=k_cache,
            v_cache=v_cache,
            slot_mapping=a["slot_mapping"],
        ):
            return
        address = CACHE_BUILDS[self.cache_build]
        _check(
            all(t.is_contiguous() for t in (qkv, a["qw"], a["kw"], a["cos_sin"])), "qkv / qw / kw / cos_sin contiguous"
        )
        _check(a["slot_mapping"].is_contiguous(), "slot_mapping contiguous")
        _check(k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1, "k_cache / v_cache unit element stride")
        if address == SLOT_HEAD_CONTIGUOUS:
            _check(k_cache.is_contiguous() and v_cache.is_contiguous(), "k_cache / v_cache contiguous")
        _check(not a["use_shuffle_layout"] and a["block_size"] == 0, "the double writes block_size 0 only")
        for s in ("per_tensor_k_scale", "per_tensor_v_scale"):
            if a[s].is_cuda:
                raise KernelCrash(f"{s} dereferenced on the host is a device pointer (segfault on hardware)")
        dtype = qkv.dtype
        _check(str(dtype).removeprefix("torch.") in contract.dtypes, "fp16 / bf16 activations")
        d, t = a["head_size"], a["num_tokens"]
        _check(d in contract.head_sizes, "head_size in {64, 128, 256}")
        rd = a["rotary_dim"] or d
        half = rd // 2
        if sections is not None:
            _check(sum(sections) == half, "mrope_section sum == rotary_dim / 2")
        hq, hk, hv = a["num_heads_q"], a["num_heads_k"], a["num_heads_v"]
        if t * (hq + hk + hv) == 0:
            raise InvalidConfiguration("HIP error: invalid configuration argument (emulated: an empty grid)")
        tensors = (qkv, a["qw"], a["kw"], a["cos_sin"], a["positions"], a["q_out"], k_cache, v_cache, a["slot_mapping"])
        if not all(x.is_cuda for x in tensors):
            raise MemoryAccessFault("Memory access fault by GPU node (emulated): a host tensor given to the kernel")
        heads = flat(qkv, dtype)[base(qkv, dtype) :][: t * (hq + hk + hv) * d].view(t, hq + hk + hv, d)
        if heads.numel() != t * (hq + hk + hv) * d:
            raise MemoryAccessFault("Memory access fault by GPU node (emulated): qkv read past its storage")
        w_q = vector(a["qw"], d, dtype, "qw").float()
        w_k = vector(a["kw"], d, dtype, "kw").float()
        cos, sin = self._cos_sin(a["cos_sin"], a["positions"], t, rd, half, sections, interleaved, dtype)
        q = self._rope(rms(heads[:, :hq].float(), w_q, a["eps"]).to(dtype), cos, sin, rd, a["is_neox_style"])
        k = self._rope(rms(heads[:, hq : hq + hk].float(), w_k, a["eps"]).to(dtype), cos, sin, rd, a["is_neox_style"])
        v = heads[:, hq + hk :]
        q_mem = flat(a["q_out"], dtype)
        start = base(a["q_out"], dtype)
        q_mem[start : start + q.numel()] = q.flatten()
        slots = _int64_at(a["slot_mapping"], torch.arange(t))
        self._store(k_cache, k, slots, a["per_tensor_k_scale"], address, hk, d)
        self._store(v_cache, v, slots, a["per_tensor_v_scale"], address, hv, d)

    @staticmethod
    def _cos_sin(
        cache: Tensor,
        positions: Tensor,
        t: int,
        rd: int,
        half: int,
        sections: list[int] | None,
        interleaved: bool,
        dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor]:
        """Per token, the ``half`` cosines and sines the kernel loads (mrope: each index from its section's row)."""
        j = torch.arange(half)
        if sections is None:
            rows = torch.zeros(half, dtype=torch.int64)
        elif interleaved:
            mid = j % 3
            rows = torch.where((mid >= 1) & (j < torch.tensor(sections)[mid] * 3), mid, 0)
        else:
            rows = torch.bucketize(j, torch.tensor(sections).cumsum(0), right=True)
        s0, s1 = (positions.stride(0), positions.stride(1)) if positions.dim() == 2 else (0, positions.stride(0))
        p = _int64_at(positions, rows.unsqueeze(0) * s0 + torch.arange(t).unsqueeze(1) * s1)  # (t, half)
        mem, at_cos = at(cache, dtype, p * rd + j, "a position past cos_sin_cache")
        _, at_sin = at(cache, dtype, p * rd + half + j, "a position past cos_sin_cache")
        return mem[at_cos].float().unsqueeze(1), mem[at_sin].float().unsqueeze(1)  # (t, 1, half)

    @staticmethod
    def _rope(x: Tensor, cos: Tensor, sin: Tensor, rd: int, neox: bool) -> Tensor:
        half = rd // 2
        f = x.float()
        out = f.clone()
        if neox:
            x0, x1 = f[..., :half], f[..., half:rd]
            out[..., :half], out[..., half:rd] = x0 * cos - x1 * sin, x1 * cos + x0 * sin
        else:
            x0, x1 = f[..., 0:rd:2], f[..., 1:rd:2]
            out[..., 0:rd:2], out[..., 1:rd:2] = x0 * cos - x1 * sin, x1 * cos + x0 * sin
        return out.to(x.dtype)

    @staticmethod
    def _store(cache: Tensor, values: Tensor, slots: Tensor, scale: Tensor, address: str, heads: int, d: int) -> None:
        kv = cache.dtype
        if kv != values.dtype:  # the fp8 cache: value / scale, cast
            values = (values.float() / float(scale.flatten()[0])).to(kv)
        if address == SLOT_HEAD_STRIDES:
            tok = cache.stride(1) if cache.dim() >= 2 else heads * d
            head = cache.stride(2) if cache.dim() >= 3 else d
        else:
            tok, head = heads * d, d
        keep = slots >= 0
        cells = slots[keep].view(-1, 1, 1) * tok + torch.arange(heads).view(1, -1, 1) * head + torch.arange(d)
        mem, cells = at(cache, kv, cells, "a KV store past the cache's storage")
        mem[cells] = values[keep]
