"""aiter's Triton fused (add +) RMSNorm + quant on the gfx95 branches, through sglang's own callers, on CPU.

Run as a script in a fresh interpreter behind the emulated ROCm + aiter told it runs on gfx950
(``EmulatedRocm(arch="gfx950:sramecc+:xnack-")``: sglang's ``_is_gfx95_supported`` is true and it
binds ``fused_rms_fp8_group_quant`` / ``fused_rms_mxfp4_quant`` as module globals).  The callers:
add_norm's ``_update_and_read_residual_aiter_mxfp4`` / ``_fp8_group`` (0.5.21+), else
``LayerCommunicator.prepare_attn`` with ``quant_format`` "mxfp4" / "fp8" (0.5.10 - 0.5.20) on a
communicator holding ``input_layernorm`` and, for after the norm, an identity for its TP-1
``_communicate_simple_fn`` (no SP variant, no attention inputs to publish).  World size 1
(gloo).  Per case: the release unguarded, guarded, and unguarded on a contiguous copy of the input.
Prints one JSON line.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

H, T, DT = 256, 4, torch.bfloat16


def callers() -> tuple[str, dict[str, Any]]:
    """The release's own caller of each kernel: ``fn(norm, hidden_states, residual) -> (out, residual)``."""
    try:
        from sglang.srt.layers.layer_boundary.residual import add_norm
    except ModuleNotFoundError:
        from sglang.srt.layers import communicator

        def via(fmt: str) -> Any:
            def call(norm: Any, hs: torch.Tensor, res: torch.Tensor | None) -> Any:
                comm = types.SimpleNamespace(
                    input_layernorm=norm,
                    _sp_variant=None,
                    _context=None,
                    qkv_latent_func=None,
                    _communicate_simple_fn=lambda hidden_states, **_: hidden_states,
                )
                return communicator.LayerCommunicator.prepare_attn(comm, hs, res, None, quant_format=fmt)

            return call

        assert communicator._is_gfx95_supported, "sglang did not take its gfx95 branch"
        return "communicator.LayerCommunicator.prepare_attn", {"mxfp4": via("mxfp4"), "fp8": via("fp8")}
    assert add_norm._is_gfx95_supported, "sglang did not take its gfx95 branch"
    return "add_norm._update_and_read_residual_aiter_*", {
        "mxfp4": lambda n, hs, res: add_norm._update_and_read_residual_aiter_mxfp4(n, hs, res, None),
        "fp8": lambda n, hs, res: add_norm._update_and_read_residual_aiter_fp8_group(n, hs, res, None),
    }


def main() -> None:
    kernels = sglang_setup.rocm(sglang_setup.GFX950)
    import aiter_norm_guard  # noqa: F401  (installs the guard before sglang's modules import)

    sglang_setup.stub_non_norm_kernels()
    sglang_setup.distributed()
    from sglang.srt.layers.layernorm import RMSNorm

    where, call = callers()
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(H, eps=1e-6).to(DT)
    with torch.no_grad():
        norm.weight.copy_((1 + 0.1 * torch.randn(H, generator=g)).to(DT))
    w = norm.weight.data.clone()
    hs = torch.randn(T, H, generator=g).to(DT)
    res = torch.randn(T, H, generator=g).to(DT)
    wide = torch.randn(H, T, generator=g).to(DT)
    cases = {  # name: (kernel, hidden_states, residual, weight)
        "fp8_safe": ("fp8", hs, None, w),
        "fp8_safe_residual": ("fp8", hs, res, w),
        "fp8_short_weight": ("fp8", hs, res, w[: H // 2].clone()),
        "mxfp4_safe": ("mxfp4", hs, None, w),
        "mxfp4_safe_residual": ("mxfp4", hs, res, w),
        "mxfp4_short_weight": ("mxfp4", hs, res, w[: H // 2].clone()),
        "mxfp4_transposed": ("mxfp4", wide.t(), res, w),
        "mxfp4_residual_fewer_rows": ("mxfp4", hs, res[: T // 2].clone(), w),
        "fp8_fp32_residual": ("fp8", hs, res.float(), w),  # Qwen2 / Qwen3 under rl_on_policy_target
        "mxfp4_fp32_residual": ("mxfp4", hs, res.float(), w),
        "fp8_strided_weight": ("fp8", hs, res, torch.stack([w, -w], 1).flatten()[::2]),
        "mxfp4_strided_weight": ("mxfp4", hs, res, torch.stack([w, -w], 1).flatten()[::2]),
    }
    out: dict[str, Any] = {"caller": where}
    for name, (kind, x, r, weight) in cases.items():
        got: dict[str, Any] = {}
        for mode, args in (("unguarded", (x, r)), ("guarded", (x, r)), ("contiguous", (x.contiguous(), r))):
            w_mode = weight.contiguous() if mode == "contiguous" else weight
            norm.weight = torch.nn.Parameter(w_mode, requires_grad=False)
            sglang_setup.guard(mode)
            kernels.reset()
            fn = call[kind]
            call_it = lambda a=args, fn=fn: fn(norm, a[0].clone(), None if a[1] is None else a[1].clone())  # noqa: E731
            got[mode] = sglang_setup.outcome(call_it)
            got[mode]["kernels"] = [c.name for c in kernels.calls]
        out[name] = got
    sglang_setup.report(out)


if __name__ == "__main__":
    main()
