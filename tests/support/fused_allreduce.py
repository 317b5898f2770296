"""sglang's all-reduce + RMSNorm fusion on CPU, in a world of two: unguarded, guarded, and sglang's unfused route.

Run as a script in a fresh interpreter: it spawns two ranks (gloo), each of which sets sglang up
the way a TP=2 worker is (``init_distributed_environment`` / ``initialize_model_parallel``, server
args with ``enable_aiter_allreduce_fusion``), behind the emulated ROCm + aiter, and replaces the TP
group's ``ca_comm`` with the emulation's :class:`CustomAllreduceDouble` whose all-reduce is a gloo
all-reduce over the TP group.  Every case goes through ``RMSNorm.forward_with_allreduce_fusion``
(layernorm ``_forward_with_allreduce_fusion`` -> ``tensor_model_parallel_fused_allreduce_rmsnorm``
-> ``GroupCoordinator.fused_allreduce_rmsnorm``).  Rank 0 prints one JSON line: per case, the
unguarded and guarded outcomes, whether the fused kernel ran, and sglang's unfused route
(``ca_comm`` None: all-reduce + ``norm.forward``) and native norms on the reduced input.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

H, T, DT = 64, 6, torch.bfloat16


def cases(norm: Any, rank: int) -> dict[str, tuple[Any, ...]]:
    """name -> (x, residual, weight to put on the norm); x differs per rank (an un-reduced partial sum)."""
    g = torch.Generator().manual_seed(100 + rank)
    shared = torch.Generator().manual_seed(7)
    x = torch.randn(T, H, generator=g).to(DT)
    res = torch.randn(T, H, generator=shared).to(DT)
    w = norm.weight.detach().clone()
    wide = torch.randn(H, T, generator=g).to(DT)
    return {
        "safe": (x, res, w),
        "zero_rows": (x[:0], res[:0], w),
        "transposed": (wide.t(), res, w),
        "short_weight": (x, res, w[: H // 2].clone()),
        "fp32_weight": (x, res, w.float()),
    }


def rank_main(rank: int, port: int, guard_mode: str, queue: Any) -> None:
    torch.set_num_threads(1)
    try:
        queue.put((rank, run_rank(rank, port)))
    except BaseException as exc:  # report, never hang the parent
        import traceback

        queue.put((rank, {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-4000:]}))


def run_rank(rank: int, port: int) -> dict[str, Any]:
    kernels = sglang_setup.rocm()
    import aiter_norm_guard  # noqa: F401  (installs the guard before sglang's modules import)

    sglang_setup.stub_non_norm_kernels()
    sglang_setup.distributed(rank=rank, world_size=2, port=port, tp=2, enable_aiter_allreduce_fusion=True)
    import torch.distributed as dist
    from sglang.srt.distributed import get_tp_group
    from sglang.srt.layers import layernorm as ln

    from aiter_norm_guard.emulation.fused import CustomAllreduceDouble

    assert ln._use_aiter, "sglang did not take its aiter route"
    tp = get_tp_group()

    def gloo_all_reduce(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out, group=tp.device_group)
        return out

    double = CustomAllreduceDouble(kernels, all_reduce=gloo_all_reduce)
    double.should_custom_ar = lambda inp: False  # sglang's plain all-reduce: gloo (not a norm)
    norm = ln.RMSNorm(H, eps=1e-6).to(DT)
    with torch.no_grad():
        norm.weight.copy_((1 + 0.1 * torch.randn(H, generator=torch.Generator().manual_seed(3))).to(DT))
    results: dict[str, Any] = {"fused_entry": type(tp).fused_allreduce_rmsnorm.__qualname__}
    for name, (x, res, w) in cases(norm, rank).items():
        norm.weight = torch.nn.Parameter(w, requires_grad=False)
        got: dict[str, Any] = {}
        for mode in ("unguarded", "guarded", "unfused", "native"):
            sglang_setup.guard(mode)
            tp.ca_comm = None if mode == "unfused" else double
            kernels.reset()
            if mode == "native":  # sglang's native norm on the reduced activation
                fn = lambda x=x, r=res: norm.forward_native(gloo_all_reduce(x.contiguous()), r.clone())  # noqa: E731
            else:
                fn = lambda x=x, r=res: norm.forward_with_allreduce_fusion(x.clone(), r.clone())  # noqa: E731
            got[mode] = sglang_setup.outcome(fn)
            got[mode]["kernels"] = [c.name for c in kernels.calls]
            dist.barrier(group=tp.cpu_group)
        results[name] = got
    results["stubbed_norm_kernels"] = sglang_setup.stubbed_norm_kernels()
    return results


def main() -> None:
    import multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=rank_main, args=(r, port, os.environ.get("AITER_NORM_GUARD", ""), queue)) for r in (0, 1)
    ]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=400) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    print(json.dumps({"ranks": [got[0], got[1]]}))


if __name__ == "__main__":
    main()
