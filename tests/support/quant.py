"""sglang's layer-boundary ``_fused_rmsnorm_fp8_per_token_quant`` on CPU, unguarded and guarded.

Run as a script in a fresh interpreter: imports the release's module that defines it
(``layers/communicator.py`` 0.5.11-0.5.20, ``layers/layer_boundary/residual/add_norm.py``
0.5.21+) behind the emulated ROCm + aiter, with only non-norm kernels stubbed, and prints one
JSON line: per case, what the release's own function does and what the guarded one does.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stubs

MODULES = ("sglang.srt.layers.layer_boundary.residual.add_norm", "sglang.srt.layers.communicator")
DT = torch.bfloat16


def load() -> Any:
    from aiter_norm_guard.emulation import EmulatedRocm

    EmulatedRocm().activate()
    import aiter_norm_guard  # noqa: F401

    stubs.install()
    stubs.platform_shims()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        stubs.freeze()
        return module
    raise SystemExit("no module of this sglang defines _fused_rmsnorm_fp8_per_token_quant")


def describe(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return [list(out.shape), str(out.dtype), float(out.float().sum()) if out.numel() else 0.0]
    return [describe(o) for o in out]


def attempt(fn: Any, *args: Any) -> Any:
    try:
        return {"outcome": "ok", "result": describe(fn(*args))}
    except Exception as exc:
        return {"outcome": type(exc).__name__, "detail": str(exc)[:160]}


def main() -> None:
    from aiter_norm_guard.guard.guard import original_of

    module = load()
    guarded = module._fused_rmsnorm_fp8_per_token_quant
    original = original_of(guarded)
    g = torch.Generator().manual_seed(0)
    w = (1 + 0.1 * torch.randn(64, generator=g)).to(DT)
    hs = torch.randn(4, 64, generator=g).to(DT)
    res = torch.randn(4, 64, generator=g).to(DT)
    wide = torch.randn(64, 8, generator=g).to(DT)
    cases = {  # name: (arguments, the arguments the guard should hand the release)
        "safe": ((hs, w, 1e-6), (hs, w, 1e-6)),
        "safe_residual": ((hs, w, 1e-6, res), (hs, w, 1e-6, res)),
        "zero_rows": ((hs[:0], w, 1e-6), None),
        "zero_rows_residual": ((hs[:0], w, 1e-6, res[:0]), None),
        "transposed": ((wide.t()[:4], w, 1e-6), (wide.t()[:4].contiguous(), w, 1e-6)),
        "fp32_weight": ((hs, w.float(), 1e-6), (hs, w, 1e-6)),
        "fp32_weight_transposed": (
            (wide.t()[:4], w.float(), 1e-6, wide.t()[4:8]),  # two faults: the layouts too
            (wide.t()[:4].contiguous(), w, 1e-6, wide.t()[4:8].contiguous()),
        ),
        "short_weight": ((hs, w[:32], 1e-6), None),
    }
    out: dict[str, Any] = {"module": module.__name__, "guarded": original is not None}
    for name, (args, canonical) in cases.items():
        out[name] = {
            "unguarded": attempt(original, *args),
            "guarded": attempt(guarded, *args),
            "release_on_canonical": attempt(original, *canonical) if canonical else None,
        }
    out["stubbed_norm_kernels"] = stubs.stubbed_norm_kernels()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
