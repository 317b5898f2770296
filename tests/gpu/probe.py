"""Run the bug report's Q/K views through the stand-in RMSNorm on the GPU, guarded or not.

``python probe.py unguarded|guarded`` — meant to run under compute-sanitizer's memcheck,
or as a child process that may die of an illegal memory access.
"""

from __future__ import annotations

import sys

import torch

import standin
from aiter_norm_guard.patcher import Patcher
from aiter_norm_guard.targets import Target

TARGET = Target(
    "standin RMSNorm.forward_aiter",
    "standin",
    "RMSNorm.forward_aiter",
    "aiter_norm_guard.guard:make_guarded_forward",
    ("_forward_method",),
    "-",
)


def main(mode: str) -> None:
    if mode == "guarded":
        Patcher((TARGET,)).install()
    qkv = torch.randn(2048, 6144, device="cuda", dtype=torch.bfloat16)
    q = qkv[:, :4096].view(2048, 32, 128)
    k = qkv[:, 4096:5120].view(2048, 8, 128)
    norm = standin.RMSNorm(128).cuda().to(torch.bfloat16)
    for view in (q, k):
        out = norm(view)
        torch.cuda.synchronize()
        err = (out.float() - norm.forward_native(view).float()).abs().max().item()
        print(f"{mode}: {tuple(view.shape)} stride {view.stride()} max abs error vs forward_native {err:.3g}")


if __name__ == "__main__":
    main(sys.argv[1])
