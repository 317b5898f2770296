"""A memory-faithful double of aiter's norm entry points, for one of two aiter builds.

Every kernel reads memory through :class:`~aiter_norm_guard.emulation.launch.Launch`, which
follows the kernel's contract in :mod:`aiter_norm_guard.kernels` (the same declarations the
guard reads): so the double is exactly as strict as those contracts, never kinder.  What is
modelled here is only aiter's Python routing around the kernels:

- ``build="legacy"`` (aiter <= v0.1.17): ``rmsnorm2d_fwd(_with_add)`` sends every rank to
  HIP (``n <= 8192``) or CK.  ``build="opus"`` (aiter >= v0.1.18): only 2-D bf16/fp16 with
  ``n <= 8192`` to HIP; the rest to "opus", which copies an input it cannot read.
- ``fused_add_rmsnorm_pad`` (Triton): ``m, n = x.shape``, a residual shape assert, a zero-padded
  output, an empty grid skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from aiter_norm_guard.emulation.launch import Launch
from aiter_norm_guard.emulation.memory import rows
from aiter_norm_guard.kernels import norm, quant
from aiter_norm_guard.kernels.form import Kernel

Tensor = torch.Tensor
BUILDS = ("legacy", "opus")
T = TypeVar("T")
#: ``rmsnorm_quant``'s parameters after ``out, input`` (``add_rmsnorm_quant``: after the residuals), less gemma_norm.
QUANT_PARAMS = "scale, weight, epsilon, group_size=0, shuffle_scale=False"
_RESIDUALS = ("residual_in", "residual_out")


def aiter_entry(name: str, params: str, body: Callable[[dict[str, Any]], T], **names: object) -> Callable[..., T]:
    """A plain function ``name(params)`` that hands ``body`` its arguments by name: aiter's exact parameters
    (``params`` as Python writes them, defaults naming ``names``), for a double to bind calls as aiter does."""
    namespace: dict[str, Any] = {"_body": body, **names}
    exec(f"def {name}({params}):\n    return _body(locals())", namespace)
    return namespace[name]  # type: ignore[no-any-return]


def aiter_check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"{what} (emulated AITER_CHECK)")


def _quant_entry(name: str, kernel: Kernel, residuals: str) -> Callable[..., None]:
    params = f"self, out, input, {residuals}{QUANT_PARAMS}, gemma_norm=False"
    return aiter_entry(name, params, lambda a: a["self"]._quant(name, kernel, a))


@dataclass(frozen=True)
class KernelCall:
    """What one kernel launch received: the tensors themselves, by argument name."""

    name: str
    tensors: dict[str, Tensor]


def rms(s: Tensor, w: Tensor, eps: float) -> Tensor:
    """RMSNorm of fp32 rows ``s`` with fp32 weight ``w``."""
    return s * torch.rsqrt(s.pow(2).mean(dim=-1, keepdim=True) + eps) * w


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

    def _log(self, name: str, **tensors: Tensor | None) -> bool:
        if self.record:
            self.calls.append(KernelCall(name, {k: v for k, v in tensors.items() if v is not None}))
        return self.compute

    def _route(self, inp: Tensor, add: bool, model_sensitive: int) -> Kernel:
        """aiter's ``rmsnorm2d_fwd(_with_add)`` routing for this build."""
        hip = model_sensitive == 0 and inp.shape[-1] <= 8192
        if self.build == "opus":
            hip = hip and inp.dim() == 2 and inp.element_size() == 2
            if not hip:
                return norm.OPUS_ADD_RMSNORM if add else norm.OPUS_RMSNORM
        if hip:
            return norm.HIP_ADD_RMSNORM if add else norm.HIP_RMSNORM
        return norm.CK_ADD_RMSNORM if add else norm.CK_RMSNORM

    def _norm(
        self,
        kernel: Kernel,
        out: Tensor,
        inp: Tensor,
        weight: Tensor,
        eps: float,
        res: tuple[Tensor | None, Tensor | None] = (None, None),
        scale: Tensor | None = None,
    ) -> None:
        """One norm kernel (``res``: residual in and out; ``scale``: rmsnorm_quant's, per row to the output's max)."""
        res_in, res_out = res
        if kernel is norm.OPUS_RMSNORM:  # copies what is not 2-D row-strided
            if not (inp.is_contiguous() or (inp.dim() == 2 and inp.stride(-1) == 1)):
                inp = inp.contiguous()
            inp = inp.view(-1, inp.shape[-1]) if inp.dim() != 2 else inp
        elif kernel is norm.OPUS_ADD_RMSNORM and inp.stride(-1) != 1:  # copies only a non-unit last stride
            inp = inp.contiguous()  # (rows through stride(-2): PITCH_LAST2 in the contract)
        if kernel in (norm.OPUS_RMSNORM, norm.OPUS_ADD_RMSNORM):  # out and residuals: asserted contiguous
            n = inp.shape[-1]
            out = out.view(-1, n)
            res_in = None if res_in is None else res_in.view(-1, n)
            res_out = None if res_out is None else res_out.view(-1, n)
        launch = Launch(kernel, inp, weight, out=out, scale=scale, residual_in=res_in, residual_out=res_out)
        w = launch.vector("weight", weight)
        if launch.empty:
            return
        s = launch.read("input", inp)
        if res_in is not None and res_out is not None:
            s = s + launch.read("residual_in", res_in)
            launch.write("residual_out", res_out, s.to(inp.dtype))
        y = rms(s, w, eps)
        sc = None if scale is None else (y.abs().amax(dim=-1) / torch.finfo(out.dtype).max).clamp(min=1e-10)
        launch.write("out", out, y if sc is None else y / sc.unsqueeze(1))
        if sc is not None:
            s_mem, s_idx = rows(scale.view(-1, 1), launch.m, 1, "scale", torch.float32, pitch=1)
            s_mem[s_idx] = sc.unsqueeze(1)

    # -- aiter's Python entry points -------------------------------------------
    def rmsnorm2d_fwd(
        self, input: Tensor, weight: Tensor, epsilon: float, use_model_sensitive_rmsnorm: int = 0
    ) -> Tensor:
        out = torch.empty_like(input)
        if self._log("rmsnorm2d_fwd", input=input, weight=weight, out=out):
            self._norm(self._route(input, False, use_model_sensitive_rmsnorm), out, input, weight, epsilon)
        return out

    def rmsnorm2d_fwd_with_add(
        self,
        out: Tensor,
        input: Tensor,
        residual_in: Tensor,
        residual_out: Tensor,
        weight: Tensor,
        epsilon: float,
        gemma_norm: bool = False,
        use_model_sensitive_rmsnorm: int = 0,
    ) -> None:
        names = {"out": out, "input": input, "residual_in": residual_in, "residual_out": residual_out}
        if self._log("rmsnorm2d_fwd_with_add", weight=weight, **names):
            kernel = self._route(input, True, use_model_sensitive_rmsnorm)
            self._norm(kernel, out, input, weight, epsilon, (residual_in, residual_out))

    def layernorm2d_fwd(
        self, input: Tensor, weight: Tensor, bias: Tensor, epsilon: float = 1e-5, x_bias: Tensor | None = None
    ) -> Tensor:
        out = torch.empty_like(input)
        if not self._log("layernorm2d_fwd", input=input, weight=weight, bias=bias, out=out):
            return out
        launch = Launch(norm.CK_LAYERNORM, input, weight, out=out, bias=bias)
        w, b = launch.vector("weight", weight), launch.vector("bias", bias)
        if not launch.empty:
            s = launch.read("input", input)
            mean = s.mean(dim=-1, keepdim=True)
            var = (s - mean).pow(2).mean(dim=-1, keepdim=True)
            launch.write("out", out, (s - mean) * torch.rsqrt(var + epsilon) * w + b)
        return out

    def _quant(self, name: str, kernel: Kernel, a: dict[str, Any]) -> None:
        """``rmsnorm_quant`` / ``add_rmsnorm_quant`` (``a``: the call's arguments by name)."""
        if self._log(name, **{k: a[k] for k in ("out", "input", *_RESIDUALS, "scale", "weight") if k in a}):
            res = (a.get("residual_in"), a.get("residual_out"))
            self._norm(kernel, a["out"], a["input"], a["weight"], a["epsilon"], res, a["scale"])

    rmsnorm_quant = _quant_entry("rmsnorm_quant", quant.HIP_RMSNORM_QUANT, "")
    add_rmsnorm_quant = _quant_entry("add_rmsnorm_quant", quant.HIP_ADD_RMSNORM_QUANT, "residual_in, residual_out, ")

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
        if self._log("fused_add_rmsnorm_pad", x=x, weight=weight, out=out, res=res, res_out=res_out):
            launch = Launch(norm.TRITON_ADD_RMSNORM_PAD, x, weight, res=res)
            if not launch.empty:
                s = launch.read("x", x)
                if res is not None and res_out is not None:
                    s = s + launch.read("res", res)
                    res_out.copy_(s.to(res.dtype))
                out[:, :n] = rms(s, launch.vector("weight", weight), epsilon).to(x.dtype)
        return (out, res_out) if res_out is not None else out

    def functions(self) -> dict[str, Callable[..., object]]:
        """The aiter names this double provides, by the name aiter gives them."""
        names = ("rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add", "layernorm2d_fwd", "rmsnorm_quant", "add_rmsnorm_quant")
        return {n: getattr(self, n) for n in (*names, "fused_add_rmsnorm_pad")}
