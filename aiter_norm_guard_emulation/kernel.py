"""A memory-faithful double of aiter's norm kernels, for one of two aiter builds.

It follows aiter's own code (``aiter/ops/rmsnorm.py``, ``norm.py``, ``csrc/kernels/
rmsnorm_quant_kernels.cu``, ``csrc/py_itfs_ck/*norm*_kernels.cu``, the Triton
``fused_add_rmsnorm_pad``), and is exactly as strict as it, never kinder:

- HIP ``rmsnorm`` / ``add_rmsnorm`` / ``rmsnorm_quant``: ``n = size(1)``, ``m = numel // n``,
  ``stride(0)`` of every tensor as its row pitch, unit last stride assumed, the weight read
  as ``n`` elements of the activation's dtype whatever its length, dtype or stride; only
  bf16/fp16 (``not support output type``) and ``n <= 8192`` (``not support n``) are checked.
- CK ``rmsnorm2d`` / ``layernorm2d``: the same with ``n = size(-1)``; bf16/fp16 only.
- ``m == 0``: no grid to launch ("invalid configuration argument"); ``n == 0``: a division
  by zero in the launcher (:class:`KernelCrash`; on hardware the process dies).
- ``build="legacy"`` (aiter <= v0.1.17): every rank goes to HIP (``hidden <= 8192``) or CK.
  ``build="opus"`` (aiter >= v0.1.18): only 2-D bf16/fp16 with ``hidden <= 8192`` goes to
  HIP; the rest to "opus", which copies a non-contiguous input and asserts on the weight.
- Triton ``fused_add_rmsnorm_pad``: 2-D only, both strides honoured, the weight read as
  ``N`` elements of its own dtype, an empty grid skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from aiter_norm_guard_emulation.memory import InvalidConfiguration, KernelCrash, rows, vector

Tensor = torch.Tensor
HALF = (torch.bfloat16, torch.float16)
BUILDS = ("legacy", "opus")


@dataclass(frozen=True)
class KernelCall:
    """What one kernel launch received: the tensors themselves, by argument name."""

    name: str
    tensors: dict[str, Tensor]


def _shape(inp: Tensor, last: bool) -> tuple[int, int]:
    n = inp.size(-1) if last else inp.size(1)  # size(1) of a 1-D tensor raises, as at::Tensor::size does
    if n == 0:
        raise KernelCrash("Floating point exception (emulated): m = numel / n with n == 0")
    m = inp.numel() // n
    if m == 0:
        raise InvalidConfiguration("HIP error: invalid configuration argument (emulated: empty grid)")
    return m, n


def _rms(s: Tensor, w: Tensor, eps: float) -> Tensor:
    return s * torch.rsqrt(s.pow(2).mean(dim=-1, keepdim=True) + eps) * w.to(torch.float32)


@dataclass
class AiterKernelDouble:
    """Stand-ins for the aiter functions sglang's norm entries import.

    ``compute=False`` skips the arithmetic and the memory model (for overhead benchmarks);
    ``record=False`` keeps no call log.
    """

    build: str = "legacy"
    compute: bool = True
    record: bool = True
    calls: list[KernelCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.build not in BUILDS:
            raise ValueError(f"build must be one of {BUILDS}, not {self.build!r}")

    def reset(self) -> None:
        self.calls.clear()

    def _log(self, name: str, **tensors: Tensor) -> bool:
        if self.record:
            self.calls.append(KernelCall(name, tensors))
        return self.compute

    # -- the raw kernels -----------------------------------------------------
    def _row_kernel(
        self, name: str, last: bool, out: Tensor, inp: Tensor, weight: Tensor, eps: float,
        res_in: Tensor | None = None, res_out: Tensor | None = None, bias: Tensor | None = None,
        layer: bool = False,
    ) -> None:  # fmt: skip
        """A HIP (``last=False``) or CK (``last=True``) norm launch, as its C++ entry reads memory."""
        if out.dtype not in HALF or inp.dtype not in HALF:
            raise RuntimeError(f"{name}: not support output type: {out.dtype} (emulated TORCH_CHECK)")
        m, n = _shape(inp, last)
        if not last and n > 8192:
            raise RuntimeError(f"{name}: not support n: {n} (emulated TORCH_CHECK)")
        dt = inp.dtype
        src, idx = rows(inp, m, n, "input", dt)
        s = src[idx].to(torch.float32)
        if res_in is not None and res_out is not None:
            r, r_idx = rows(res_in, m, n, "residual_in", dt)
            s = s + r[r_idx].to(torch.float32)
            ro, ro_idx = rows(res_out, m, n, "residual_out", dt)
            ro[ro_idx] = s.to(dt)
        w = vector(weight, n, dt, "weight")
        if layer:
            b = vector(bias, n, dt, "bias") if bias is not None else torch.zeros(n, dtype=dt)
            mean = s.mean(dim=-1, keepdim=True)
            var = (s - mean).pow(2).mean(dim=-1, keepdim=True)
            y = (s - mean) * torch.rsqrt(var + eps) * w.to(torch.float32) + b.to(torch.float32)
        else:
            y = _rms(s, w, eps)
        dst, d_idx = rows(out, m, n, "out", dt)
        dst[d_idx] = y.to(dt)

    def _opus_input(self, inp: Tensor, weight: Tensor, row_stride: bool) -> Tensor:
        """aiter >= v0.1.18's opus wrapper: copy what it cannot read, assert on the weight."""
        if not (inp.is_contiguous() or (row_stride and inp.dim() == 2 and inp.stride(-1) == 1)):
            inp = inp.contiguous()
        assert inp.dtype in (*HALF, torch.float32), f"rms_norm_opus: fp16/bf16/fp32 only, got {inp.dtype}"
        assert weight.dtype == inp.dtype, "rms_norm_opus: weight dtype must match input"
        assert weight.is_contiguous(), "rms_norm_opus: weight must be contiguous"
        assert weight.shape[-1] == inp.shape[-1], "rms_norm_opus: weight length != hidden"
        return inp

    def _opus(self, out: Tensor, inp: Tensor, weight: Tensor, eps: float, res: tuple[Tensor, Tensor] | None) -> None:
        hidden = inp.shape[-1]
        rows_n = inp.numel() // hidden if hidden else 0
        if rows_n == 0:
            raise InvalidConfiguration("HIP error: invalid configuration argument (emulated opus: no rows)")
        pitch = inp.stride(-2) if inp.dim() >= 2 else hidden
        src, idx = rows(inp, rows_n, hidden, "input", inp.dtype, pitch=pitch)
        s = src[idx].to(torch.float32)
        if res is not None:
            s = s + res[0].reshape(rows_n, hidden).to(torch.float32)
            res[1].view(rows_n, hidden).copy_(s.to(inp.dtype))
        out.view(rows_n, hidden).copy_(_rms(s, weight, eps).to(out.dtype))

    def _hip_common(self, inp: Tensor, model_sensitive: int) -> bool:
        if self.build == "legacy":
            return model_sensitive == 0 and inp.shape[-1] <= 8192
        return model_sensitive == 0 and inp.dim() == 2 and inp.element_size() == 2 and inp.shape[-1] <= 8192

    # -- aiter's Python entry points -------------------------------------------
    def rmsnorm2d_fwd(
        self, input: Tensor, weight: Tensor, epsilon: float, use_model_sensitive_rmsnorm: int = 0
    ) -> Tensor:
        out = torch.empty_like(input)
        if not self._log("rmsnorm2d_fwd", input=input, weight=weight, out=out):
            return out
        if self._hip_common(input, use_model_sensitive_rmsnorm):
            self._row_kernel("rmsnorm", False, out, input, weight, epsilon)
        elif self.build == "legacy":
            self._row_kernel("rmsnorm2d_ck", True, out, input, weight, epsilon)
        else:
            inp = self._opus_input(input, weight, row_stride=True)
            assert out.dtype == inp.dtype and out.is_contiguous(), "rms_norm_opus: bad out"
            self._opus(out, inp, weight, epsilon, None)
        return out

    def rmsnorm2d_fwd_with_add(
        self, out: Tensor, input: Tensor, residual_in: Tensor, residual_out: Tensor, weight: Tensor,
        epsilon: float, gemma_norm: bool = False, use_model_sensitive_rmsnorm: int = 0,
    ) -> None:  # fmt: skip
        names = {"out": out, "input": input, "residual_in": residual_in, "residual_out": residual_out}
        if not self._log("rmsnorm2d_fwd_with_add", weight=weight, **names):
            return
        if self._hip_common(input, use_model_sensitive_rmsnorm):
            self._row_kernel("add_rmsnorm", False, out, input, weight, epsilon, residual_in, residual_out)
        elif self.build == "legacy":
            self._row_kernel("rmsnorm2d_with_add_ck", True, out, input, weight, epsilon, residual_in, residual_out)
        else:
            inp = input.contiguous() if input.stride(-1) != 1 else input
            self._opus_input(inp, weight, row_stride=True)
            assert out.dtype == inp.dtype and out.is_contiguous(), "add_rms_norm_opus: bad out"
            assert residual_in.dtype == inp.dtype == residual_out.dtype, "add_rms_norm_opus: residual dtype mismatch"
            assert residual_in.is_contiguous() and residual_out.is_contiguous(), "add_rms_norm_opus: residual"
            self._opus(out, inp, weight, epsilon, (residual_in, residual_out))

    def layernorm2d_fwd(
        self, input: Tensor, weight: Tensor, bias: Tensor, epsilon: float = 1e-5, x_bias: Tensor | None = None
    ) -> Tensor:
        out = torch.empty_like(input)
        if self._log("layernorm2d_fwd", input=input, weight=weight, bias=bias, out=out):
            self._row_kernel("layernorm2d", True, out, input, weight, epsilon, bias=bias, layer=True)
        return out

    def _quant(self, name: str, out: Tensor, inp: Tensor, scale: Tensor, weight: Tensor, eps: float,
               res: tuple[Tensor, Tensor] | None) -> None:  # fmt: skip
        m, n = _shape(inp, last=False)
        dt = inp.dtype
        if dt not in HALF or n > 8192:
            raise RuntimeError(f"{name}: not support input {dt} / n {n} (emulated TORCH_CHECK)")
        src, idx = rows(inp, m, n, "input", dt)
        s = src[idx].to(torch.float32)
        if res is not None:
            r, r_idx = rows(res[0], m, n, "residual_in", dt)
            s = s + r[r_idx].to(torch.float32)
            ro, ro_idx = rows(res[1], m, n, "residual_out", dt)
            ro[ro_idx] = s.to(dt)
        y = _rms(s, vector(weight, n, dt, "weight"), eps)
        qmax = torch.finfo(out.dtype).max
        sc = (y.abs().amax(dim=-1) / qmax).clamp(min=1e-10)
        dst, d_idx = rows(out, m, n, "out", out.dtype)
        dst[d_idx] = (y / sc.unsqueeze(1)).to(out.dtype)
        s_mem, s_idx = rows(scale.view(-1, 1), m, 1, "scale", torch.float32, pitch=1)
        s_mem[s_idx] = sc.unsqueeze(1)

    def rmsnorm_quant(self, out: Tensor, input: Tensor, scale: Tensor, weight: Tensor, epsilon: float,
                      group_size: int = 0, shuffle_scale: bool = False, gemma_norm: bool = False) -> None:  # fmt: skip
        if self._log("rmsnorm_quant", out=out, input=input, scale=scale, weight=weight):
            self._quant("rmsnorm_quant", out, input, scale, weight, epsilon, None)

    def add_rmsnorm_quant(self, out: Tensor, input: Tensor, residual_in: Tensor, residual_out: Tensor,
                          scale: Tensor, weight: Tensor, epsilon: float, group_size: int = 0,
                          shuffle_scale: bool = False, gemma_norm: bool = False) -> None:  # fmt: skip
        names = {"out": out, "input": input, "residual_in": residual_in, "residual_out": residual_out}
        if self._log("add_rmsnorm_quant", scale=scale, weight=weight, **names):
            self._quant("add_rmsnorm_quant", out, input, scale, weight, epsilon, (residual_in, residual_out))

    def fused_add_rmsnorm_pad(
        self, x: Tensor, weight: Tensor, epsilon: float, res: Tensor | None = None, x_pad_to_multiple: int = 0
    ) -> Tensor | tuple[Tensor, Tensor]:
        m, n = x.shape
        n_out = -(-n // x_pad_to_multiple) * x_pad_to_multiple if x_pad_to_multiple > 0 else n
        out = torch.zeros((m, n_out), dtype=x.dtype, device=x.device)
        res_out = None
        if res is not None:
            m2, n2 = res.shape
            assert m == m2 and n == n2, "Shape error!"
            res_out = torch.empty((m, n), dtype=res.dtype, device=res.device)
        extra = {"res": res, "res_out": res_out} if res is not None else {}
        if self._log("fused_add_rmsnorm_pad", x=x, weight=weight, out=out, **extra) and m > 0:  # type: ignore[arg-type]
            src, idx = rows(x, m, n, "x", x.dtype, col=x.stride(1))
            s = src[idx].to(torch.float32)
            if res is not None and res_out is not None:
                r, r_idx = rows(res, m, n, "res", res.dtype, col=res.stride(1))
                s = s + r[r_idx].to(torch.float32)
                res_out.copy_(s.to(res.dtype))
            out[:, :n] = _rms(s, vector(weight, n, weight.dtype, "weight"), epsilon).to(x.dtype)
        return (out, res_out) if res_out is not None else out

    def functions(self) -> dict[str, Callable[..., object]]:
        """The aiter names this double provides, by the name aiter gives them."""
        names = ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add", "layernorm2d_fwd", "rmsnorm_quant", "add_rmsnorm_quant")
        return {n: getattr(self, n) for n in (*names, "fused_add_rmsnorm_pad")}
