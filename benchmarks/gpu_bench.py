"""GPU timings (CUDA events via triton's do_bench) for the guard around the Triton aiter double.

Safe path: guarded vs unguarded ``forward_aiter`` on 2-D contiguous (T, 4096).
Strided path: guarded vs the upstream inline fix on the Q view (T, 32, 128) of packed QKV.
Also records whether torch.compile keeps a wrapt FunctionWrapper (the design choice).
Writes ``gpu_bench.json`` and ``gpu_bench.md`` into $OUT (or the current directory).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gpu"))
import standin
from aiter_norm_guard.guard import make_guarded_forward
from aiter_norm_guard.patcher import Patcher
from cuda_graphs import capture
from probe import TARGET

CUDA = torch.device("cuda")
TOKENS = [1, 8, 64, 256, 2048, 4096, 8192]


def bench(fn) -> float:  # type: ignore[no-untyped-def]
    return float(do_bench(fn, warmup=25, rep=100)) * 1000.0  # microseconds


def graph_of(fn):  # type: ignore[no-untyped-def]
    """``fn`` captured in a CUDA graph, as sglang replays decode; returns the replay callable."""
    return capture(fn)[0]


def interleaved(fns, rounds: int = 5):  # type: ignore[no-untyped-def]
    """Minimum per-call microseconds of each function, measured in alternating rounds."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], bench(fn))
    return best


def wrapt_probe() -> dict[str, object]:
    """Does Dynamo keep a wrapt FunctionWrapper around forward_aiter? (plain function vs wrapt)."""
    import wrapt

    out: dict[str, object] = {}
    original = standin.RMSNorm.__dict__["forward_aiter"]
    guarded = make_guarded_forward(original)
    forms = {
        "plain_function": guarded,
        "wrapt_FunctionWrapper": wrapt.FunctionWrapper(
            original, lambda wrapped, instance, args, kwargs: guarded(instance, *args, **kwargs)
        ),
    }
    for name, form in forms.items():
        torch._dynamo.reset()
        standin.RMSNorm.forward_aiter = form
        m = standin.RMSNorm(128).to(CUDA).to(torch.bfloat16)
        graphs: list[str] = []

        def record(gm, example_inputs, graphs=graphs):  # type: ignore[no-untyped-def]
            graphs.append(gm.code)
            raise RuntimeError("recorded")  # never run it: without the guard it would read out of bounds

        x = torch.randn(8, 6144, device=CUDA, dtype=torch.bfloat16)[:, :4096].view(8, 32, 128)
        try:
            torch.compile(lambda t, m=m: m(t), backend=record, fullgraph=True)(x)
        except Exception:
            pass
        code = "\n".join(graphs)
        out[name] = {
            "graph_captured": bool(graphs),
            "guard_in_graph": ("contiguous" in code or "clone" in code) and "rmsnorm2d_fwd" in code,
        }
    standin.RMSNorm.forward_aiter = original
    torch._dynamo.reset()
    return out


def main() -> None:
    rows = []
    m = standin.RMSNorm(4096).to(CUDA).to(torch.bfloat16)
    mq = standin.RMSNorm(128).to(CUDA).to(torch.bfloat16)
    original = standin.RMSNorm.__dict__["forward_aiter"]
    patcher = Patcher((TARGET,))
    for t in TOKENS:
        x = torch.randn(t, 4096, device=CUDA, dtype=torch.bfloat16)
        q = torch.randn(t, 6144, device=CUDA, dtype=torch.bfloat16)[:, :4096].view(t, 32, 128)
        fns = {"safe_unguarded": lambda x=x: original(m, x), "strided_inline_fix": lambda q=q: mq.forward_inline_fix(q)}
        graphs = {k: graph_of(f) for k, f in fns.items()}
        patcher.install()
        fns.update(safe_guarded=lambda x=x: m(x), strided_guarded=lambda q=q: mq(q))
        graphs.update(safe_guarded=graph_of(fns["safe_guarded"]), strided_guarded=graph_of(fns["strided_guarded"]))
        eager, replay = interleaved(fns), interleaved(graphs)
        patcher.uninstall()
        row: dict[str, float] = {"tokens": t}
        for mode, res in (("eager", eager), ("graph", replay)):
            row.update({f"{mode}_{k}_us": v for k, v in res.items()})
            row[f"{mode}_safe_ratio"] = res["safe_guarded"] / res["safe_unguarded"]
            row[f"{mode}_strided_ratio"] = res["strided_guarded"] / res["strided_inline_fix"]
        rows.append(row)
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "rows": rows,
        "wrapt_vs_plain_under_torch_compile": wrapt_probe(),
    }
    out = Path(os.environ.get("OUT", "."))
    (out / "gpu_bench.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"GPU: {result['device']}, torch {result['torch']}; triton do_bench (CUDA events), microseconds per call,",
        "minimum over 5 interleaved rounds. eager = Python + launches; graph = CUDA-graph replay (sglang decode).",
        "",
        "| tokens | mode | safe: unguarded | safe: guarded | ratio | strided: inline fix | strided: guarded | ratio |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        for mode in ("eager", "graph"):
            lines.append(
                f"| {r['tokens']} | {mode} | {r[f'{mode}_safe_unguarded_us']:.1f} | "
                f"{r[f'{mode}_safe_guarded_us']:.1f} | {r[f'{mode}_safe_ratio']:.3f} | "
                f"{r[f'{mode}_strided_inline_fix_us']:.1f} | {r[f'{mode}_strided_guarded_us']:.1f} | "
                f"{r[f'{mode}_strided_ratio']:.3f} |"
            )
    lines += ["", f"torch.compile and wrapper forms: {json.dumps(result['wrapt_vs_plain_under_torch_compile'])}"]
    (out / "gpu_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
