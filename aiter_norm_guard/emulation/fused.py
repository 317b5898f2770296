"""Doubles of aiter's fused norm kernels: MLA's q / k RMSNorm, the Triton RMSNorm + quant, and the
custom all-reduce + RMSNorm.  Every read goes through :class:`~aiter_norm_guard.emulation.launch.Launch`
and the contracts in ``aiter_norm_guard.kernels`` (the guard's), as in :mod:`.kernel`; only aiter's
Python around the kernels (argument checks, allocations, return shapes) is written out here, from
the sources each contract cites.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard.emulation.kernel import AiterKernelDouble, rms
from aiter_norm_guard.emulation.launch import Launch
from aiter_norm_guard.kernels import allreduce, attention, norm, quant

Tensor = torch.Tensor
FP8 = torch.float8_e4m3fnuz


class QuantType(enum.IntEnum):
    """``aiter.ops.enum.QuantType`` (the members sglang names)."""

    No = 0
    per_Token = 1
    per_1x128 = 2


def _norm_pair(
    kernel: Any, x: Tensor, w: Tensor, eps: float, out: Tensor, name: str, out_name: str, m: int, w_name: str
) -> None:
    launch = Launch(kernel, x, w, arg=name, m=m, out=out)
    if not launch.empty:
        launch.write(out_name, out, rms(launch.read(name, x), launch.vector(w_name, w), eps))


class FusedDouble:
    """The fused kernels, logging into ``kernels``' call list (``kernels.compute`` off: no work)."""

    def __init__(self, kernels: AiterKernelDouble) -> None:
        self.kernels = kernels

    def _qk(
        self,
        q: Tensor,
        q_weight: Tensor,
        q_eps: float,
        k: Tensor,
        k_weight: Tensor,
        k_eps: float,
        q_out: Tensor,
        k_out: Tensor,
    ) -> None:
        if not self.kernels._log("fused_qk_rmsnorm", q=q, k=k, q_weight=q_weight, k_weight=k_weight):
            return
        m = q.size(0)
        if m >= 16384:  # aiter falls back to the HIP rmsnorm on each, before any of the fused kernel's checks
            self.kernels._norm(norm.HIP_RMSNORM, q_out, q, q_weight, q_eps)
            self.kernels._norm(norm.HIP_RMSNORM, k_out, k, k_weight, k_eps)
            return
        assert q.dim() == 2 and k.dim() == 2, "q and k must be 2D (emulated AITER_CHECK)"
        assert q_weight.dim() == 1 and k_weight.dim() == 1 and q_weight.is_contiguous() and k_weight.is_contiguous()
        assert q.dtype == k.dtype == q_weight.dtype == k_weight.dtype, "dtype mismatch (emulated AITER_CHECK)"
        kernel = attention.FUSED_QK_RMSNORM
        _norm_pair(kernel, q, q_weight, q_eps, q_out, "q", "q_out", m, "q_weight")
        _norm_pair(kernel, k, k_weight, k_eps, k_out, "k", "k_out", m, "k_weight")

    def fused_qk_rmsnorm(
        self, q: Tensor, q_weight: Tensor, q_eps: float, k: Tensor, k_weight: Tensor, k_eps: float
    ) -> tuple[Tensor, Tensor]:
        """aiter <= v0.1.13 ``fused_qk_norm_rope_cache_quant.fused_qk_rmsnorm`` (returns the outputs)."""
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        self._qk(q, q_weight, q_eps, k, k_weight, k_eps, q_out, k_out)
        return q_out, k_out

    def fused_qk_rmsnorm_unified(
        self,
        q_out_quantized: Tensor | None = None,
        q_out_scale: Tensor | None = None,
        q: Tensor | None = None,
        q_weight: Tensor | None = None,
        q_epsilon: float = 1e-6,
        q_out_unquantized: Tensor | None = None,
        k_out: Tensor | None = None,
        q_res_out: Tensor | None = None,
        k: Tensor | None = None,
        k_weight: Tensor | None = None,
        k_epsilon: float | None = None,
        q_residual: Tensor | None = None,
        gemma_norm: bool = False,
        quant_type: Any = QuantType.No,
        **_: Any,
    ) -> None:
        """aiter >= v0.1.14 ``fused_qk_rmsnorm_group_quant.fused_qk_rmsnorm`` (writes the given outputs)."""
        assert q is not None and k is not None and q_weight is not None and k_weight is not None
        q_out = q_out_quantized if q_out_quantized is not None else torch.empty_like(q)
        k_out = k_out if k_out is not None else torch.empty_like(k)
        self._qk(q, q_weight, q_epsilon, k, k_weight, k_epsilon or q_epsilon, q_out, k_out)

    def fused_rms_fp8_group_quant(
        self,
        inp1: Tensor,
        inp1_weight: Tensor,
        inp1_epsilon: float,
        inp2: Tensor | None = None,
        inp2_weight: Tensor | None = None,
        inp2_epsilon: float | None = None,
        group_size: int = 128,
        dtype_quant: torch.dtype = FP8,
        res1: Tensor | None = None,
        output_unquantized_inp1: bool = False,
        transpose_scale: bool = False,
    ) -> Any:
        """Triton ``fused_rms_fp8_group_quant``: ``((out1_fp8, scales), out1, out2, out_res1)``."""
        m, n1 = inp1.shape
        if inp2 is not None:
            assert m == inp2.shape[0]
        if res1 is not None:
            mr, nr = res1.shape
            assert m == mr and n1 == nr, "The shape should be identical between inp1 and res1"
        return self._quant(
            quant.TRITON_FP8_GROUP_QUANT,
            ("inp1", "inp2"),
            inp1,
            inp1_weight,
            inp1_epsilon,
            inp2,
            inp2_weight,
            inp2_epsilon,
            res1,
            dtype_quant,
            group_size,
        )

    def fused_rms_mxfp4_quant(
        self,
        x1: Tensor,
        x1_weight: Tensor,
        x1_epsilon: float,
        x2: Tensor | None = None,
        x2_weight: Tensor | None = None,
        x2_epsilon: float = 0.0,
        res1: Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Triton ``fused_rms_mxfp4_quant``: ``((out1_fp4, scales), out1, out2, out_res1)`` (v0.1.8+)."""
        _, n1 = x1.shape
        assert n1 % 2 == 0
        return self._quant(
            quant.TRITON_MXFP4_QUANT,
            ("x1", "x2"),
            x1,
            x1_weight,
            x1_epsilon,
            x2,
            x2_weight,
            x2_epsilon or 0.0,
            res1,
            torch.uint8,
            32,
        )

    def _quant(
        self,
        kernel: Any,
        names: tuple[str, str],
        x1: Tensor,
        w1: Tensor,
        e1: float,
        x2: Tensor | None,
        w2: Tensor | None,
        e2: float | None,
        res1: Tensor | None,
        qtype: torch.dtype,
        group: int,
    ) -> Any:
        m, n1 = x1.shape
        out = torch.empty((m, n1), dtype=qtype, device=x1.device)
        scales = torch.empty((m, max(1, -(-n1 // group))), dtype=torch.float32, device=x1.device)
        out2 = None if x2 is None else torch.empty_like(x2)
        out_res1 = None if res1 is None else torch.empty((m, n1), dtype=res1.dtype, device=res1.device)
        if not self.kernels._log(kernel.name, inp1=x1, weight1=w1, inp2=x2, weight2=w2, res1=res1):
            return (out, scales), None, out2, out_res1
        first = Launch(kernel, x1, w1, arg=names[0], res1=res1, inp2=x2, weight2=w2)
        if first.empty:
            return (out, scales), None, out2, out_res1
        s = first.read(names[0], x1)
        if res1 is not None and out_res1 is not None:
            s = s + first.read("res1", res1)
            out_res1.copy_(s.to(res1.dtype))
        y = rms(s, first.vector(f"{names[0]}_weight", w1), e1)
        amax = y.abs().reshape(m, -1, min(group, n1)).amax(-1) if n1 % min(group, n1) == 0 else y.abs().amax(-1, True)
        scales[:, : amax.shape[1]] = (amax / 448.0).clamp(min=1e-10)
        out.copy_(y.clamp(-448, 448).to(qtype) if qtype.is_floating_point else (y * 8).clamp(0, 255).to(qtype))
        if x2 is not None and w2 is not None and out2 is not None:
            second = Launch(kernel, x2, w2, arg=names[1], m=m)
            out2.copy_(rms(second.read(names[1], x2), second.vector(f"{names[1]}_weight", w2), e2 or 0.0).to(x2.dtype))
        return (out, scales), None, out2, out_res1


class CustomAllreduceDouble:
    """aiter's ``CustomAllreduce`` as sglang's ``GroupCoordinator`` uses it for the fused path.

    ``all_reduce`` sums a tensor over the group (a process group's, or the identity for a test of
    one); the norm reads memory as ``aiter_norm_guard.kernels.allreduce.AR_RMSNORM`` says.
    """

    disabled = False

    def __init__(self, kernels: AiterKernelDouble, all_reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        self.kernels = kernels
        self.all_reduce = all_reduce or (lambda t: t.clone())

    def custom_fused_ar_rms(
        self, inp: Tensor, res_inp: Tensor, w: Tensor, eps: float, use_1stage: bool = False
    ) -> tuple[Tensor, Tensor]:
        out, res_out = torch.empty_like(inp), torch.empty_like(inp)
        if not self.kernels._log("fused_allreduce_rmsnorm", inp=inp, res_inp=res_inp, w=w):
            return out, res_out
        launch = Launch(allreduce.AR_RMSNORM, inp, w, res_inp=res_inp, res_out=res_out, out=out)
        flat = torch.empty((launch.m, launch.n), dtype=inp.dtype, device=inp.device)
        flat.copy_(launch.read("inp", inp).to(inp.dtype))  # hipMemcpyAsync of numel elements from data_ptr
        s = self.all_reduce(flat).to(torch.float32) + launch.read("res_inp", res_inp)
        launch.write("res_out", res_out, s)
        launch.write("out", out, rms(s.to(inp.dtype).float(), launch.vector("w", w), eps))
        return out, res_out

    fused_ar_rms = custom_fused_ar_rms
