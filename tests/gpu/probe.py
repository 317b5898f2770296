"""One case through a real sglang release's own dispatch on the GPU, guarded or not.

``python probe.py guarded|unguarded CASE [CASE ...]`` — run under compute-sanitizer's memcheck,
or as a child process that may die of an illegal memory access.  Prints one line per case.
"""

from __future__ import annotations

import os
import sys

# the switch before anything of ours is imported (a guarded parent sets it on for its children)
os.environ["AITER_NORM_GUARD"] = "1" if sys.argv[1:2] == ["guarded"] else "0"

import torch
from rocm_on_cuda import load

import aiter_norm_guard
from aiter_norm_guard.cli.cases import BY_NAME, make_module


def fused(mode: str, name: str) -> None:
    """The fused paths' hazards: MLA's k with fewer rows than q (read and written with q's m), the
    all-reduce fusion's residual with fewer rows than the input (read flat, numel of the input)."""
    import types

    import sglang.srt.distributed.parallel_state as ps

    from aiter_norm_guard.guard.guard import Guard
    from aiter_norm_guard.targets.attention import MLA_QK_RMSNORM
    from aiter_triton import TritonCustomAllreduce, fused_qk_rmsnorm

    cuda, bf = torch.device("cuda"), torch.bfloat16
    if name == "mla_k_rows":
        fn = Guard(fused_qk_rmsnorm, MLA_QK_RMSNORM).build() if mode == "guarded" else fused_qk_rmsnorm
        latent = torch.randn(2048, 2112, device=cuda, dtype=bf)
        q, k = latent[:, :1536], torch.randn(64, 512, device=cuda, dtype=bf)
        out = fn(q, torch.randn(1536, device=cuda, dtype=bf), 1e-6, k, torch.randn(512, device=cuda, dtype=bf), 1e-6)
        shapes = [tuple(t.shape) for t in out]
    else:
        group = types.SimpleNamespace(ca_comm=TritonCustomAllreduce())
        x, res = torch.randn(2048, 4096, device=cuda, dtype=bf), torch.randn(64, 4096, device=cuda, dtype=bf)
        out = ps.GroupCoordinator.fused_allreduce_rmsnorm(group, x, res, torch.randn(4096, device=cuda, dtype=bf), 1e-6)
        shapes = None if out is None else [tuple(t.shape) for t in out]
    torch.cuda.synchronize()
    print(f"{mode} {name}: result {shapes}")


def main(mode: str, names: list[str]) -> None:
    assert aiter_norm_guard.status()["enabled"] == (mode == "guarded")
    ln, _ = load()
    for name in names:
        if name in ("mla_k_rows", "ar_residual_rows"):
            fused(mode, name)
            continue
        case = BY_NAME[name]
        inp = case.build(2048, torch.bfloat16, torch.device("cuda"), torch.Generator().manual_seed(0))
        norm = make_module(ln, case.entry, inp.hidden, torch.bfloat16, inp.weight_dtype, torch.device("cuda"))
        out = norm(*inp.args())
        torch.cuda.synchronize()
        want = norm.forward_native(*inp.args())
        got, ref = (out[0], want[0]) if isinstance(want, tuple) else (out, want)
        err = (got.float() - ref.float()).abs().max().item() if got.shape == ref.shape and got.numel() else 0.0
        print(f"{mode} {name}: {tuple(inp.x.shape)} stride {inp.x.stride()} max abs error vs forward_native {err:.3g}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
