"""One benchmark variant in one release environment; prints a JSON line.

Variants: ``unguarded`` (the release's own forward_aiter), ``guarded`` (the installed
guard), ``prologue`` (0.5.23's forward_aiter with its CPU early exit ``if not x.is_cuda``
removed, i.e. the Python a GPU runs).  The aiter kernels are the double with
``compute=False``: they return at once, so only Python overhead is timed.

Every variant is timed against a floor in the same process, alternating: sglang 0.5.10's
own ``forward_aiter`` (read from the pinned 0.5.10 overlay) compiled into this release's
module globals.  Overhead = variant - floor, so differences between processes cancel.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from aiter_norm_guard_emulation import AiterKernelDouble, EmulatedRocm
from aiter_norm_guard_emulation.counting import CopyCounter

SIZES = [(t, h) for h in (128, 4096) for t in (1, 8, 64, 256)]


FLOOR_SOURCE = Path(__file__).resolve().parent.parent / ".envs/sglang-0.5.10/sglang/srt/layers/layernorm.py"


def _compile(fdef: ast.FunctionDef, filename: str, globals_: dict[str, Any]) -> Any:
    fdef.decorator_list = []
    ns: dict[str, Any] = {}
    exec(compile(ast.Module([fdef], []), filename, "exec"), globals_, ns)
    return ns[fdef.name]


def without_cpu_exit(fn: Any) -> Any:
    """``fn`` recompiled without its ``if not x.is_cuda: return forward_native`` statement."""
    fdef = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    assert isinstance(fdef, ast.FunctionDef)
    fdef.body = [st for st in fdef.body if not (isinstance(st, ast.If) and "is_cuda" in ast.unparse(st.test))]
    return _compile(fdef, inspect.getsourcefile(fn) or "<forward_aiter>", fn.__globals__)


def floor_function(module_globals: dict[str, Any]) -> Any:
    """sglang 0.5.10's RMSNorm.forward_aiter, compiled into ``module_globals``."""
    for node in ast.parse(FLOOR_SOURCE.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == "RMSNorm":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward_aiter":
                    return _compile(item, str(FLOOR_SOURCE), module_globals)
    raise LookupError("no RMSNorm.forward_aiter in the 0.5.10 source")


def _once(fn: Any, args: tuple[Any, ...], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter_ns() - start) / calls


def paired_ns(fn: Any, floor: Any, *args: Any, calls: int = 20000, repeats: int = 9) -> tuple[float, float]:
    """(floor, variant) per-call ns: minimum over alternating repeats."""
    best_f = best_v = float("inf")
    for _ in range(repeats):
        best_f = min(best_f, _once(floor, args, calls))
        best_v = min(best_v, _once(fn, args, calls))
    return best_f, best_v


def layouts(hidden: int = 128, tokens: int = 64) -> dict[str, torch.Tensor]:
    bf = torch.bfloat16
    qkv = torch.randn(tokens, 6144, dtype=bf)
    return {
        "2d_contiguous": torch.randn(tokens, 4096, dtype=bf),
        "3d_contiguous": torch.randn(tokens, 32, hidden, dtype=bf),
        "2d_row_strided": qkv[:, :4096],
        "qkv_slice_3d": qkv[:, :4096].view(tokens, 32, hidden),
        "2d_transposed": torch.randn(4096, tokens, dtype=bf).t(),
    }


def main(mode: str) -> None:
    EmulatedRocm(AiterKernelDouble(compute=False, record=False)).activate()
    import sglang.srt.layers.layernorm as ln

    if mode == "guarded":
        import aiter_norm_guard

        assert aiter_norm_guard.status()["active"]
    fn = ln.RMSNorm.forward_aiter
    if mode == "prologue":
        fn = without_cpu_exit(fn)
    floor = floor_function(vars(ln))
    result: dict[str, Any] = {"floor_ns": {}, "per_call_ns": {}, "copies": {}}
    cells = {f"{t}x{h}": (ln.RMSNorm(h).to(torch.bfloat16), torch.randn(t, h, dtype=torch.bfloat16)) for t, h in SIZES}
    m = ln.RMSNorm(4096).to(torch.bfloat16)
    cells["residual_8x4096"] = (
        m,
        torch.randn(8, 4096, dtype=torch.bfloat16),
        torch.randn(8, 4096, dtype=torch.bfloat16),
    )
    for cell, args in cells.items():
        result["floor_ns"][cell], result["per_call_ns"][cell] = paired_ns(fn, floor, *args)
    for name, x in layouts().items():
        m = ln.RMSNorm(x.shape[-1]).to(torch.bfloat16)
        with CopyCounter() as c:
            fn(m, x)
        result["copies"][name] = {"copies": c.copies, "copy_bytes": c.copy_bytes, "alloc_bytes": c.alloc_bytes}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
