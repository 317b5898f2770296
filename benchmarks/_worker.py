"""One benchmark process for one sglang release; prints a JSON line.

The aiter kernels are the emulation's double with ``compute=False``: they return at once, so
only Python is timed.  The guard is not auto-installed (``AITER_NORM_GUARD=0``): it is built
around the release's own entry exactly as the patcher builds it (its kernels' route, the
release row its fingerprint matches), so the release and the guard run in this one process,
interleaved (minimum over repeats).  sglang 0.5.21+ sends host tensors to ``forward_native``;
to time its kernel path on this CPU, its ``x.is_cuda`` test and the guard's are read as
``x.is_cpu`` (the same one C attribute, true here).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
BF = torch.bfloat16
CALLS, REPEATS = int(os.environ.get("BENCH_CALLS", "20000")), int(os.environ.get("BENCH_REPEATS", "9"))
T, H = 8, 4096


class _HostAsCpu(ast.NodeTransformer):
    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr == "is_cuda":
            node.attr = "is_cpu"
        return node


def on_cpu(fn: Any) -> Any:
    """``fn`` recompiled in its own module with ``.is_cuda`` read as ``.is_cpu`` (itself if it has none)."""
    src = textwrap.dedent(inspect.getsource(fn))
    if ".is_cuda" not in src:
        return fn
    tree = ast.parse(src)
    tree.body[0].decorator_list = []  # type: ignore[attr-defined]
    ns: dict[str, Any] = {}
    exec(compile(_HostAsCpu().visit(tree), inspect.getsourcefile(fn) or "?", "exec"), fn.__globals__, ns)
    return ns[fn.__name__]


def guard_for(fn: Any, target: Any, module: Any) -> Any:
    """The guard the patcher would build around ``fn`` (its source decides the release row)."""
    from aiter_norm_guard.guard import codegen
    from aiter_norm_guard.guard.guard import Guard
    from aiter_norm_guard.install.locate import route, source_node, upstream

    compile_function = codegen.compile_function
    codegen.compile_function = lambda src, *a: compile_function(src.replace(".is_cuda", ".is_cpu"), *a)
    try:
        return Guard(on_cpu(fn), target, False, route(target, module), upstream(target, source_node(fn))).build()
    finally:
        codegen.compile_function = compile_function


def timed(variants: dict[str, tuple[Any, tuple[Any, ...]]]) -> dict[str, float]:
    """Per-call ns of each ``fn(*args)``, the minimum over interleaved repeats."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(REPEATS):
        for name, (fn, args) in variants.items():
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                fn(*args)
            best[name] = min(best[name], (time.perf_counter_ns() - start) / CALLS)
    return best


def copies(fn: Any, args: tuple[Any, ...]) -> dict[str, int]:
    from aiter_norm_guard.emulation.counting import CopyCounter

    with CopyCounter() as c:
        fn(*args)
    return {"copies": c.copies, "bytes": c.copy_bytes}


def rms_classes(m: Any, m_head: Any) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """The input classes of the issue, as (module, args) for ``forward_aiter``."""
    x, res = torch.randn(T, H, dtype=BF), torch.randn(T, H, dtype=BF)
    qkv = torch.randn(T, 6144, dtype=BF)
    deepstack = torch.randn(T, 3 * H, dtype=BF)
    return {
        "2-D contiguous": (m, (x,)),
        "2-D with residual": (m, (x, res)),
        "N-D contiguous (a view suffices)": (m_head, (torch.randn(T, 32, 128, dtype=BF),)),
        "the bug report's Q view (one copy)": (m_head, (qkv[:, :H].view(T, 32, 128),)),
        "transposed 2-D (one copy)": (m, (torch.randn(H, T, dtype=BF).t(),)),
        "post as a column slice (Qwen3-VL)": (m, (x, res, deepstack[:, H : 2 * H])),
    }


def classes(release: str) -> dict[str, Any]:
    import sglang.srt.layers.layernorm as ln

    from aiter_norm_guard.cli.cases import GEMMA, LAYER, make_module
    from aiter_norm_guard.targets.layernorm import GEMMA_RMSNORM, LAYER_NORM, RMSNORM

    own = on_cpu(ln.RMSNorm.forward_aiter)
    guard = guard_for(ln.RMSNorm.forward_aiter, RMSNORM, ln)
    cases = rms_classes(ln.RMSNorm(H).to(BF), ln.RMSNorm(128).to(BF))
    if "post_residual_addition" not in inspect.signature(own).parameters:
        cases.pop("post as a column slice (Qwen3-VL)")
    variants: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    counts: dict[str, Any] = {}
    for name, (m, args) in cases.items():
        variants[f"RMSNorm: {name} | release"] = (own, (m, *args))
        variants[f"RMSNorm: {name} | guard"] = (guard, (m, *args))
        counts[f"RMSNorm: {name}"] = {"release": copies(own, (m, *args)), "guard": copies(guard, (m, *args))}
    x, res = torch.randn(T, H, dtype=BF), torch.randn(T, H, dtype=BF)
    for entry, target in ((GEMMA, GEMMA_RMSNORM), (LAYER, LAYER_NORM)):
        cls, attr = entry.split(".")
        fn = getattr(getattr(ln, cls), attr)
        if not _guardable(target, fn, ln):
            continue
        mod = make_module(ln, entry, H, BF)
        variants[f"{cls}: 2-D contiguous | release"] = (fn, (mod, x))
        variants[f"{cls}: 2-D contiguous | guard"] = (guard_for(fn, target, ln), (mod, x))
    variants.update(weight_kinds(ln, own, guard, x))
    variants.update(ablation(guard, own, ln.RMSNorm(H).to(BF), x, res))
    variants.update(quant_variants(x, res))
    variants.update(residual_fix_variants(ln, x, res))
    return {"release": release, "ns": timed(variants), "copies": counts}


def weight_kinds(ln: Any, own: Any, guard: Any, x: torch.Tensor) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """RMSNorm with its weight a plain tensor (Llama-4's qk-norm) or a buffer: no cliff against a Parameter."""
    out: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    if "has_weight" in inspect.signature(ln.RMSNorm.__init__).parameters:
        plain = ln.RMSNorm(H, has_weight=False)
        plain.weight = plain.weight.to(BF)
        out["RMSNorm, plain-tensor weight: 2-D contiguous | release"] = (own, (plain, x))
        out["RMSNorm, plain-tensor weight: 2-D contiguous | guard"] = (guard, (plain, x))
    buffer = ln.RMSNorm(H).to(BF)
    w = buffer.weight.data
    del buffer.weight
    buffer.register_buffer("weight", w)
    out["RMSNorm, buffer weight: 2-D contiguous | release"] = (own, (buffer, x))
    out["RMSNorm, buffer weight: 2-D contiguous | guard"] = (guard, (buffer, x))
    return out


Variants = dict[str, tuple[Any, tuple[Any, ...]]]


def ablation(guard: Any, own: Any, m: Any, x: torch.Tensor, res: torch.Tensor) -> Variants:
    """The guard's residual-path checks added one at a time around the release's own call, in place
    (each one's cost is what it adds there): where the residual path's time goes."""
    from aiter_norm_guard.guard import codegen
    from aiter_norm_guard.guard.registry import guard_of

    g = guard_of(guard)
    groups = [(grp.rows, grp.vectors) for grp in g.groups]
    conds = codegen._conditions(groups, g.with_rows, ("residual",), ("post_residual_addition",), None)
    conds = [c.replace(".is_cuda", ".is_cpu") for c in conds]
    out: Variants = {}
    head = "_s = x.shape; _w0_0 = self._parameters.get('weight'); _dt = x.dtype"
    for i in range(len(conds) + 1):
        test = " and ".join(conds[:i]) or "True"
        src = (
            f"def f(self, x, residual=None, post_residual_addition=None):\n    {head}\n    _safe = {test}\n"
            "    return _original(self, x, residual, post_residual_addition) if _safe else None\n"
        )
        ns: dict[str, Any] = {"_original": own}
        exec(src, ns)
        out[f"ablation {i:02d}: {conds[i - 1] if i else 'frame, lookups'}"] = (ns["f"], (m, x, res))
    return out


def _guardable(target: Any, fn: Any, module: Any) -> bool:
    from aiter_norm_guard.install.locate import has_aiter_branch
    from aiter_norm_guard.targets import selected

    return has_aiter_branch(target, fn) and selected(target, module)


def residual_fix_variants(ln: Any, x: torch.Tensor, res: torch.Tensor) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """0.5.19's forward_aiter (the first full residual fix), compiled into this release's module."""
    path = ROOT / ".envs" / "sglang-0.5.19" / "sglang" / "srt" / "layers" / "layernorm.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == "RMSNorm":
            fn = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "forward_aiter")
            fn.decorator_list = []
            ns: dict[str, Any] = {}
            exec(compile(ast.Module([fn], []), str(path), "exec"), vars(ln), ns)
            m = ln.RMSNorm(H).to(BF)
            m.__dict__.setdefault("_fused_pad_kernel", None)  # attributes 0.5.19's code reads, older modules lack
            m.__dict__.setdefault("x_pad_to_multiple", 0)
            return {"RMSNorm: 2-D with residual | 0.5.19's full fix": (ns["forward_aiter"], (m, x, res))}
    return {}


def quant_variants(x: torch.Tensor, res: torch.Tensor) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """The layer-boundary fp8 quant, with sglang's non-norm kernels stubbed (tests/support/stubs.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import importlib

    import stubs

    from aiter_norm_guard.targets.fused_quant import ADD_NORM_QUANT, COMMUNICATOR_QUANT

    stubs.install()
    stubs.platform_shims()
    for name, target in (
        ("sglang.srt.layers.layer_boundary.residual.add_norm", ADD_NORM_QUANT),
        ("sglang.srt.layers.communicator", COMMUNICATOR_QUANT),
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        stubs.freeze()
        own = getattr(module, "_fused_rmsnorm_fp8_per_token_quant", None)
        if own is None:
            return {}
        guard = guard_for(own, target, module)
        w = torch.ones(H, dtype=BF)
        return {
            "fp8 quant: 2-D contiguous | release": (own, (x, w, 1e-6)),
            "fp8 quant: 2-D contiguous | guard": (guard, (x, w, 1e-6)),
            "fp8 quant: 2-D with residual | release": (own, (x, w, 1e-6, res)),
            "fp8 quant: 2-D with residual | guard": (guard, (x, w, 1e-6, res)),
        }
    return {}


def main(release: str) -> None:
    from aiter_norm_guard.emulation import AiterKernelDouble, EmulatedRocm

    EmulatedRocm(AiterKernelDouble(compute=False, record=False)).activate()
    print(json.dumps(classes(release)))


if __name__ == "__main__":
    main(sys.argv[1])
