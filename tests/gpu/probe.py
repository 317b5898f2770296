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


def main(mode: str, names: list[str]) -> None:
    assert aiter_norm_guard.status()["enabled"] == (mode == "guarded")
    ln, _ = load()
    for name in names:
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
