"""One benchmark process for one sglang release; prints a JSON line.

The aiter kernels are the emulation's double with ``compute=False``: they return at once, so
only Python is timed.  The guard is not auto-installed here (``AITER_NORM_GUARD=0``): each
guarded function is built with ``make_guarded`` around the very function it is compared with,
so the floor, the guard and the upstream fix run in this one process, interleaved:

- RMSNorm's floor is sglang 0.5.10's own ``forward_aiter`` (no fix), compiled from the pinned
  0.5.10 source into this release's module; its upstream fix is this release's own
  ``forward_aiter`` (0.5.11: ``x`` only; 0.5.19: ``x``, residual, zero rows, weight dtype).
- Gemma's and LayerNorm's floor is this release's own entry (no upstream fix exists).
- The fp8 quant's floor is this release's own function (sglang's callers check zero rows).
Overhead = variant - floor (ns per call, minimum over interleaved repeats).
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
FLOOR_SOURCE = ROOT / ".envs/sglang-0.5.10/sglang/srt/layers/layernorm.py"
BF = torch.bfloat16
CALLS, REPEATS = int(os.environ.get("BENCH_CALLS", "20000")), int(os.environ.get("BENCH_REPEATS", "9"))


def compiled(path: Path, cls: str, name: str, globals_: dict[str, Any]) -> Any:
    """``cls.name`` from ``path``'s source, compiled into ``globals_`` (another release's module)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    item.decorator_list = []
                    ns: dict[str, Any] = {}
                    exec(compile(ast.Module([item], []), str(path), "exec"), globals_, ns)
                    return ns[name]
    raise LookupError(f"{cls}.{name} not in {path}")


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


def rms_modules(ln: Any, hidden: int = 4096) -> dict[str, Any]:
    """RMSNorm with its weight as a Parameter, a plain tensor (``has_weight=False``) and a buffer."""
    param = ln.RMSNorm(hidden).to(BF)
    plain = ln.RMSNorm(hidden, has_weight=False)
    plain.weight = plain.weight.to(BF)
    buffer = ln.RMSNorm(hidden).to(BF)
    w = buffer.weight.data
    del buffer.weight
    buffer.register_buffer("weight", w)
    return {"Parameter": param, "plain tensor": plain, "buffer": buffer}


def overhead(release: str) -> dict[str, Any]:
    import sglang.srt.layers.layernorm as ln

    from aiter_norm_guard import targets
    from aiter_norm_guard.cli.cases import GEMMA, LAYER, make_module
    from aiter_norm_guard.patching.guard import make_guarded
    from aiter_norm_guard.patching.patcher import has_aiter_branch

    x = torch.randn(8, 4096, dtype=BF)
    res = torch.randn(8, 4096, dtype=BF)
    floor = compiled(FLOOR_SOURCE, "RMSNorm", "forward_aiter", vars(ln))
    guard = make_guarded(floor, targets.RMSNORM)
    fix = ln.RMSNorm.forward_aiter
    v: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for kind, m in rms_modules(ln).items():
        if kind == "plain tensor" and "has_weight" not in ln.RMSNorm.__init__.__code__.co_varnames:
            continue
        v[f"RMSNorm {kind} | floor"] = (floor, (m, x))
        v[f"RMSNorm {kind} | guard"] = (guard, (m, x))
    m = rms_modules(ln)["Parameter"]
    v["RMSNorm Parameter | upstream fix"] = (fix, (m, x))
    v["RMSNorm residual | floor"] = (floor, (m, x, res))
    v["RMSNorm residual | guard"] = (guard, (m, x, res))
    v["RMSNorm residual | upstream fix"] = (fix, (m, x, res))
    for entry, target in ((GEMMA, targets.GEMMA_RMSNORM), (LAYER, targets.LAYER_NORM)):
        cls, attr = entry.split(".")
        own = getattr(getattr(ln, cls), attr)
        if not (has_aiter_branch(target, own) and all(getattr(ln, f, False) for f in target.selected_by)):
            continue  # this release's entry never reaches aiter: nothing to guard
        mod = make_module(ln, entry, 4096, BF)
        v[f"{cls} | floor"] = (own, (mod, x))
        v[f"{cls} | guard"] = (make_guarded(own, target), (mod, x))
        if entry == GEMMA:
            v[f"{cls} residual | floor"] = (own, (mod, x, res))
            v[f"{cls} residual | guard"] = (make_guarded(own, target), (mod, x, res))
    quant = quant_variants(x, res)
    m = rms_modules(ln)["Parameter"]
    return {"release": release, "ns": timed({**v, **quant}), "checks": check_floors(floor, guard, m, x)}


def quant_variants(x: torch.Tensor, res: torch.Tensor) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """The layer-boundary fp8 quant, with sglang's non-norm kernels stubbed (tests/support/stubs.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    import stubs

    from aiter_norm_guard import targets
    from aiter_norm_guard.patching.guard import make_guarded

    stubs.install()
    stubs.platform_shims()
    try:
        import sglang.srt.layers.communicator as comm
    except ImportError:
        return {}
    stubs.freeze()
    own = comm._fused_rmsnorm_fp8_per_token_quant
    guard = make_guarded(own, targets.COMMUNICATOR_QUANT)
    w = torch.ones(4096, dtype=BF)
    return {
        "fp8 quant | floor": (own, (x, w, 1e-6)),
        "fp8 quant | guard": (guard, (x, w, 1e-6)),
        "fp8 quant residual | floor": (own, (x, w, 1e-6, res)),
        "fp8 quant residual | guard": (guard, (x, w, 1e-6, res)),
    }


ABLATION = (  # the guard's fast path built up one check at a time, in place (cumulative)
    ("one more Python frame (exact signature)", ""),
    ("+ rank 2, rows, hidden: x.shape", "_s = x.shape; _m, _n = _s if len(_s) == 2 else (0, 0)"),
    ("+ non-empty, contiguous: x.is_contiguous()", "_ok = _m and _n and x.is_contiguous()"),
    ("+ weight lookup: self._parameters.get('weight')", "_w = self._parameters.get('weight')"),
    ("+ weight length: _n == _w.numel()", "_ok = _ok and _n == _w.numel()"),
    ("+ weight dtype: _w.dtype is x.dtype", "_ok = _ok and _w.dtype is x.dtype"),
    ("+ weight contiguous: _w.is_contiguous()", "_ok = _ok and _w.is_contiguous()"),
)


def check_floors(floor: Any, guard: Any, m: Any, x: torch.Tensor) -> dict[str, float]:
    """What each per-call check of the fast path adds, measured in place around the floor (ns)."""
    variants: dict[str, tuple[Any, tuple[Any, ...]]] = {"floor": (floor, (m, x))}
    body: list[str] = []
    for name, line in ABLATION:
        body += [line] if line else []
        src = "def f(self, x, residual=None, post=None):\n" + "".join(f"    {b}\n" for b in body)
        ns: dict[str, Any] = {"_original": floor}
        exec(src + "    return _original(self, x, residual, post)\n", ns)
        variants[name] = (ns["f"], (m, x))
    variants["the guard as built (try, the residual branch)"] = (guard, (m, x))
    ns_ = timed(variants)
    return {k: v - ns_["floor"] for k, v in ns_.items() if k != "floor"}


def copies() -> dict[str, Any]:
    """Copies and bytes per call by layout class (64 tokens), guard around 0.5.10's floor vs this release."""
    import sglang.srt.layers.layernorm as ln

    from aiter_norm_guard import targets
    from aiter_norm_guard.patching.guard import make_guarded
    from aiter_norm_guard_emulation.counting import CopyCounter

    qkv = torch.randn(64, 6144, dtype=BF)
    layouts = {
        "2d_contiguous": torch.randn(64, 4096, dtype=BF),
        "3d_contiguous": torch.randn(64, 32, 128, dtype=BF),
        "2d_row_strided": qkv[:, :4096],
        "qkv_slice_3d": qkv[:, :4096].view(64, 32, 128),
        "2d_transposed": torch.randn(4096, 64, dtype=BF).t(),
    }
    floor = compiled(FLOOR_SOURCE, "RMSNorm", "forward_aiter", vars(ln))
    fns = {"guard": make_guarded(floor, targets.RMSNORM), "release": ln.RMSNorm.forward_aiter}
    out: dict[str, Any] = {}
    for name, t in layouts.items():
        m = ln.RMSNorm(t.shape[-1]).to(BF)
        for label, fn in fns.items():
            with CopyCounter() as c:
                fn(m, t)
            out.setdefault(name, {})[label] = {"copies": c.copies, "copy_bytes": c.copy_bytes}
    return out


def main(mode: str, release: str) -> None:
    from aiter_norm_guard_emulation import AiterKernelDouble, EmulatedRocm

    EmulatedRocm(AiterKernelDouble(compute=False, record=False)).activate()
    result = overhead(release) if mode == "overhead" else {"release": release, "copies": copies()}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
