"""GPU host time per call through a real sglang release, guard vs the release's own entry; not a test.

In one process with ``.gpu/sglang-X`` on PYTHONPATH (scripts/gpu-test.sh runs it per release):
for each input class of the CPU suite (``benchmarks/_worker.py``), sglang's own
``RMSNorm.forward_aiter`` and the guard the patcher builds around it (its route, its release
row) run interleaved.  Eager calls at decode sizes are launch-bound, so the figure is host time
per call (``time.perf_counter_ns`` over a block of calls, synchronized at both ends; minimum of
7 blocks), with CUDA-event device time (triton's ``do_bench``) beside it.  Appends a table to
``$OUT/gpu_bench.md`` and writes ``$OUT/gpu_bench-<release>.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from triton.testing import do_bench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gpu"))
os.environ["AITER_NORM_GUARD"] = "0"  # the guard is built by hand around what it is compared with

from rocm_on_cuda import load  # noqa: E402

from aiter_norm_guard.guard.guard import Guard  # noqa: E402
from aiter_norm_guard.install.locate import route, source_node, upstream  # noqa: E402
from aiter_norm_guard.kernels.needs import X_LAYOUT  # noqa: E402
from aiter_norm_guard.targets.layernorm import RMSNORM  # noqa: E402

CUDA, BF, H = torch.device("cuda"), torch.bfloat16, 4096
CALLS, BLOCKS = 2000, 7


def classes(ln: Any, t: int) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    m, mh = ln.RMSNorm(H).to(CUDA, BF), ln.RMSNorm(128).to(CUDA, BF)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=CUDA, dtype=BF)

    x, res = r(t, H), r(t, H)
    out = {
        "2-D contiguous": (m, (x,)),
        "2-D with residual": (m, (x, res)),
        "N-D contiguous": (mh, (r(t, 32, 128),)),
        "Q view (one copy)": (mh, (r(t, 6144)[:, :H].view(t, 32, 128),)),
        "transposed 2-D (one copy)": (m, (r(H, t).t(),)),
        "post as a column slice": (m, (x, res, r(t, 3 * H)[:, H : 2 * H])),
    }
    if "post_residual_addition" not in ln.RMSNorm.forward_aiter.__code__.co_varnames:
        out.pop("post as a column slice")
    return out


def host_us(fn: Any, args: tuple[Any, ...]) -> float:
    best = float("inf")
    for _ in range(BLOCKS):
        torch.cuda.synchronize()
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            fn(*args)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter_ns() - start) / CALLS / 1000)
    return best


def main() -> None:
    ln, _ = load()
    own = ln.RMSNorm.forward_aiter
    guard = Guard(own, RMSNORM, False, route(RMSNORM, ln), upstream(RMSNORM, source_node(own))).build()
    release = importlib.metadata.version("sglang")
    row = upstream(RMSNORM, source_node(own))
    own_layout = row is not None and X_LAYOUT in row.alone  # else the release itself faults on N-D / strided x
    rows = []
    for t in (8, 2048):
        for name, (m, args) in classes(ln, t).items():
            if not own_layout and len(args) == 1 and not (args[0].dim() == 2 and args[0].is_contiguous()):
                continue
            mine, theirs = (guard, (m, *args)), (own, (m, *args))
            host = {"release": host_us(*theirs), "guard": host_us(*mine)}
            host["release"] = min(host["release"], host_us(*theirs))  # interleaved: release, guard, release
            device = {
                k: float(do_bench(lambda f=f, a=a: f(*a), warmup=25, rep=100)) * 1000
                for k, (f, a) in (("release", theirs), ("guard", mine))
            }
            rows.append(
                {
                    "tokens": t,
                    "class": name,
                    "host_us": host,
                    "device_us": device,
                    "host_ratio": host["guard"] / host["release"],
                }
            )
    out = Path(os.environ.get("OUT", "."))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "sglang": release, "rows": rows}
    (out / f"gpu_bench-{release}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"### sglang {release} (real, aiter branch) on {result['device']}, torch {result['torch']}",
        "",
        "Host time per eager call (perf_counter, blocks of 2000 calls, min of 7) and device time (do_bench), "
        "microseconds; the guard as the patcher builds it around the release's own forward_aiter",
        "",
        "| tokens | class | host: release | host: guard | host ratio | device: release | device: guard |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        h, d = r["host_us"], r["device_us"]
        lines.append(
            f"| {r['tokens']} | {r['class']} | {h['release']:.2f} | {h['guard']:.2f} | {r['host_ratio']:.3f} "
            f"| {d['release']:.2f} | {d['guard']:.2f} |"
        )
    with open(out / "gpu_bench.md", "a") as f:
        f.write("\n".join(lines) + "\n\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
