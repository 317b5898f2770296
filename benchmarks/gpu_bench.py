"""GPU timings through a real sglang release (CUDA events via triton's do_bench); not a test.

In one process with ``.gpu/sglang-X`` on PYTHONPATH (scripts/gpu-test.sh runs it for 0.5.15):

- safe path: sglang's RMSNorm module call, guarded vs the release's own ``forward_aiter``, on
  2-D contiguous (T, 4096), eager and under CUDA-graph replay (how sglang runs decode);
- strided path, the bug report's Q view: the guard around 0.5.10's unfixed ``forward_aiter``
  (compiled from .gpu/sglang-0.5.10 into this release's module) vs this release's own inline fix;
- whether ``torch.compile`` keeps a plain-function guard in its graph, and a wrapt FunctionWrapper.
Writes ``gpu_bench.json`` and ``gpu_bench.md`` into $OUT (or the current directory).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from triton.testing import do_bench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gpu"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ["AITER_NORM_GUARD"] = "0"  # the guard is built by hand around what it is compared with

from _worker import compiled  # noqa: E402
from rocm_on_cuda import load  # noqa: E402

from aiter_norm_guard.cli.cases import make_module  # noqa: E402
from aiter_norm_guard.patching.guard import make_guarded  # noqa: E402
from aiter_norm_guard.targets.layernorm import RMSNORM  # noqa: E402
from cuda_graphs import capture  # noqa: E402

CUDA, BF = torch.device("cuda"), torch.bfloat16
TOKENS = [1, 64, 2048, 8192]
FLOOR_SOURCE = ROOT / ".gpu" / "sglang-0.5.10" / "sglang" / "srt" / "layers" / "layernorm.py"


def interleaved(fns: dict[str, Any], rounds: int = 3) -> dict[str, float]:
    """Minimum microseconds per call of each function, in alternating rounds."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], float(do_bench(fn, warmup=25, rep=100)) * 1000.0)
    return best


def both_modes(fns: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {"eager": interleaved(fns), "graph": interleaved({k: capture(f)[0] for k, f in fns.items()})}


def wrapt_probe(ln: Any) -> dict[str, Any]:
    """Does Dynamo keep the guard in the graph: as a plain function, and as a wrapt FunctionWrapper?"""
    import wrapt

    original = ln.RMSNorm.forward_aiter
    guarded = make_guarded(original, RMSNORM)
    def via_guard(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return guarded(instance, *args, **kwargs)

    forms = {"plain_function": guarded, "wrapt_FunctionWrapper": wrapt.FunctionWrapper(original, via_guard)}
    out: dict[str, Any] = {}
    for name, fn in forms.items():
        torch._dynamo.reset()
        graphs: list[str] = []
        m = make_module(ln, RMSNORM.name, 128, BF, None, CUDA)

        def backend(gm: torch.fx.GraphModule, _: Any, graphs: list[str] = graphs) -> Any:
            graphs.append(gm.code)
            return gm.forward

        step = torch.compile(lambda q, fn=fn, m=m: fn(m, q), backend=backend, fullgraph=True)
        q = torch.randn(128, 8, device=CUDA, dtype=BF).t()  # (8, 128) transposed: only the guard copies it
        step(q)
        out[name] = {"graph_captured": bool(graphs), "guard_in_graph": any("contiguous" in g or "clone" in g
                                                                           for g in graphs)}  # fmt: skip
    return out


def main() -> None:
    ln, _ = load()
    floor = compiled(FLOOR_SOURCE, "RMSNorm", "forward_aiter", vars(ln))
    guard_floor = make_guarded(floor, RMSNORM)
    own = ln.RMSNorm.forward_aiter
    guard_own = make_guarded(own, RMSNORM)
    rows = []
    for t in TOKENS:
        m = make_module(ln, RMSNORM.name, 4096, BF, None, CUDA)
        x = torch.randn(t, 4096, device=CUDA, dtype=BF)
        q = torch.randn(t, 6144, device=CUDA, dtype=BF)[:, :4096].view(t, 32, 128)
        mq = make_module(ln, RMSNORM.name, 128, BF, None, CUDA)
        safe = both_modes({"unguarded": lambda m=m, x=x: own(m, x), "guarded": lambda m=m, x=x: guard_own(m, x)})
        strided = both_modes(
            {"inline fix": lambda m=mq, q=q: own(m, q), "guarded": lambda m=mq, q=q: guard_floor(m, q)}
        )
        for mode in ("eager", "graph"):
            rows.append({"tokens": t, "mode": mode, "safe_unguarded_us": safe[mode]["unguarded"],
                         "safe_guarded_us": safe[mode]["guarded"],
                         "safe_ratio": safe[mode]["guarded"] / safe[mode]["unguarded"],
                         "strided_inline_fix_us": strided[mode]["inline fix"],
                         "strided_guarded_us": strided[mode]["guarded"],
                         "strided_ratio": strided[mode]["guarded"] / strided[mode]["inline fix"]})  # fmt: skip
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "sglang": __import__("importlib.metadata").metadata.version("sglang"), "rows": rows,
              "torch_compile": wrapt_probe(ln)}  # fmt: skip
    lines = [f"GPU: {result['device']}, torch {result['torch']}, sglang {result['sglang']} (real, aiter branch); "
             "do_bench microseconds per call, minimum over 3 interleaved rounds; graph = CUDA-graph replay", "",
             "| tokens | mode | safe: unguarded | safe: guarded | ratio | Q view: inline fix | Q view: guarded "
             "| ratio |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['tokens']} | {r['mode']} | {r['safe_unguarded_us']:.1f} | {r['safe_guarded_us']:.1f} | "
                     f"{r['safe_ratio']:.3f} | {r['strided_inline_fix_us']:.1f} | {r['strided_guarded_us']:.1f} | "
                     f"{r['strided_ratio']:.3f} |")  # fmt: skip
    lines += ["", f"torch.compile: {json.dumps(result['torch_compile'])}"]
    out = Path(os.environ.get("OUT", "."))
    (out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
