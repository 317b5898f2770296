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

from aiter_norm_guard.emulation.kernel import AiterKernelDouble, aiter_entry, rms
from aiter_norm_guard.emulation.launch import Launch
from aiter_norm_guard.kernels import allreduce, attention, norm, quant

Tensor = torch.Tensor
FP8 = torch.float8_e4m3fnuz


class QuantType(enum.IntEnum):
    """``aiter.ops.enum.QuantType`` (the members sglang names)."""

    No = 0
    per_Token = 1
    per_1x128 = 2


_UNIFIED = (
    "self, q_out_quantized=None, q_out_scale=None, q=None, q_weight=None, q_epsilon=1e-6, q_out_unquantized=None, "
    "k_out=None, q_res_out=None, k=None, k_weight=None, k_epsilon=None, q_residual=None, gemma_norm=False, "
    "quant_type=QuantType.No, **_"
)
_FP8 = (
    "self, inp1, inp1_weight, inp1_epsilon, inp2=None, inp2_weight=None, inp2_epsilon=None, group_size=128, "
    "dtype_quant=FP8, res1=None, output_unquantized_inp1=False, transpose_scale=False"
)
_MXFP4 = "self, x1, x1_weight, x1_epsilon, x2=None, x2_weight=None, x2_epsilon=0.0, res1=None, *args, **kwargs"


class FusedDouble:
    """The fused kernels, logging into ``kernels``' call list (``kernels.compute`` off: no work)."""

    def __init__(self, kernels: AiterKernelDouble) -> None:
        self.kernels = kernels

    def _qk(self, *pairs: tuple[Tensor, Tensor, float, Tensor]) -> None:
        """``pairs``: q's and k's (input, weight, epsilon, output)."""
        (q, q_weight, _, _), (k, k_weight, _, _) = pairs
        if not self.kernels._log("fused_qk_rmsnorm", q=q, k=k, q_weight=q_weight, k_weight=k_weight):
            return
        m = q.size(0)
        if m >= 16384:  # aiter falls back to the HIP rmsnorm on each, before any of the fused kernel's checks
            for x, w, eps, out in pairs:
                self.kernels._norm(norm.HIP_RMSNORM, out, x, w, eps)
            return
        assert q.dim() == 2 and k.dim() == 2, "q and k must be 2D (emulated AITER_CHECK)"
        assert q_weight.dim() == 1 and k_weight.dim() == 1 and q_weight.is_contiguous() and k_weight.is_contiguous()
        assert q.dtype == k.dtype == q_weight.dtype == k_weight.dtype, "dtype mismatch (emulated AITER_CHECK)"
        for name, (x, w, eps, out) in zip("qk", pairs, strict=True):
            launch = Launch(attention.FUSED_QK_RMSNORM, x, w, arg=name, m=m, out=out)
            if not launch.empty:
                launch.write(f"{name}_out", out, rms(launch.read(name, x), launch.vector(f"{name}_weight", w), eps))

    def fused_qk_rmsnorm(
        self, q: Tensor, q_weight: Tensor, q_eps: float, k: Tensor, k_weight: Tensor, k_eps: float
    ) -> tuple[Tensor, Tensor]:
        """aiter <= v0.1.13 ``fused_qk_norm_rope_cache_quant.fused_qk_rmsnorm`` (returns the outputs)."""
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        self._qk((q, q_weight, q_eps, q_out), (k, k_weight, k_eps, k_out))
        return q_out, k_out

    def _unified(self, a: dict[str, Any]) -> None:
        """aiter >= v0.1.14 ``fused_qk_rmsnorm_group_quant.fused_qk_rmsnorm`` (writes the given outputs)."""
        q, q_weight, k, k_weight = a["q"], a["q_weight"], a["k"], a["k_weight"]
        assert q is not None and k is not None and q_weight is not None and k_weight is not None
        q_out = a["q_out_quantized"] if a["q_out_quantized"] is not None else torch.empty_like(q)
        k_out = a["k_out"] if a["k_out"] is not None else torch.empty_like(k)
        self._qk((q, q_weight, a["q_epsilon"], q_out), (k, k_weight, a["k_epsilon"] or a["q_epsilon"], k_out))

    def _fp8(self, a: dict[str, Any]) -> Any:
        """Triton ``fused_rms_fp8_group_quant``: ``((out1_fp8, scales), out1, out2, out_res1)``."""
        m, n1 = a["inp1"].shape
        if a["inp2"] is not None:
            assert m == a["inp2"].shape[0]
        if a["res1"] is not None:
            mr, nr = a["res1"].shape
            assert m == mr and n1 == nr, "The shape should be identical between inp1 and res1"
        return self._quant(quant.TRITON_FP8_GROUP_QUANT, "inp", a, a["dtype_quant"], a["group_size"])

    def _mxfp4(self, a: dict[str, Any]) -> Any:
        """Triton ``fused_rms_mxfp4_quant``: ``((out1_fp4, scales), out1, out2, out_res1)`` (v0.1.8+)."""
        _, n1 = a["x1"].shape
        assert n1 % 2 == 0
        return self._quant(quant.TRITON_MXFP4_QUANT, "x", a, torch.uint8, 32)

    fused_qk_rmsnorm_unified = aiter_entry(
        "fused_qk_rmsnorm_unified", _UNIFIED, lambda a: a["self"]._unified(a), QuantType=QuantType
    )
    fused_rms_fp8_group_quant = aiter_entry("fused_rms_fp8_group_quant", _FP8, lambda a: a["self"]._fp8(a), FP8=FP8)
    fused_rms_mxfp4_quant = aiter_entry("fused_rms_mxfp4_quant", _MXFP4, lambda a: a["self"]._mxfp4(a))

    def _quant(self, kernel: Any, p: str, a: dict[str, Any], qtype: torch.dtype, group: int) -> Any:
        """Both Triton quants: the arguments ``{p}1``, ``{p}1_weight``, ``{p}1_epsilon``, ``{p}2``... and ``res1``."""
        names = (f"{p}1", f"{p}1_weight", f"{p}1_epsilon", f"{p}2", f"{p}2_weight", f"{p}2_epsilon", "res1")
        x1, w1, e1, x2, w2, e2, res1 = (a[k] for k in names)
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
        y = rms(s, first.vector(names[1], w1), e1)
        amax = y.abs().reshape(m, -1, min(group, n1)).amax(-1) if n1 % min(group, n1) == 0 else y.abs().amax(-1, True)
        scales[:, : amax.shape[1]] = (amax / 448.0).clamp(min=1e-10)
        out.copy_(y.clamp(-448, 448).to(qtype) if qtype.is_floating_point else (y * 8).clamp(0, 255).to(qtype))
        if x2 is not None and w2 is not None and out2 is not None:
            second = Launch(kernel, x2, w2, arg=names[3], m=m)
            out2.copy_(rms(second.read(names[3], x2), second.vector(names[4], w2), e2 or 0.0).to(x2.dtype))
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
