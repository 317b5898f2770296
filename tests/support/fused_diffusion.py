"""The diffusion runtime's own ``RMSNorm.forward_aiter`` (``sglang.multimodal_gen.runtime.layers.layernorm``,
0.5.12+) on CPU behind the emulated ROCm + aiter, unguarded and guarded, against its ``forward_native``.

Run as a script in a fresh interpreter; prints one JSON line.  ``BARE_PACKAGE=1``: the package
``sglang.multimodal_gen`` is entered without running its ``__init__`` (which, before 0.5.21, imports the
whole diffusion generator: diffusers, cache-dit, opencv, scipy, a web server); the layernorm module
and everything it imports are the release's own.  The module selects ``forward_aiter`` at
construction (``_forward_method``), as a diffusion model's norms do.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

MODULE = "sglang.multimodal_gen.runtime.layers.layernorm"
H, T, DT = 64, 6, torch.bfloat16


def bare_package(name: str) -> None:
    """``name`` importable as a package whose ``__init__`` is not run (its submodules load as usual)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations is not None
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = module.__path__
    sys.modules[name] = module


def amdsmi_one_gpu() -> None:
    """What 0.5.12 - 0.5.15's diffusion platform probe asks (``amdsmi``, AMD's SMI library, absent on this
    host): one processor.  Not a kernel; the probe decides that the platform is ROCm."""
    amdsmi = types.ModuleType("amdsmi")
    amdsmi.amdsmi_init = amdsmi.amdsmi_shut_down = lambda *a, **k: None  # type: ignore[attr-defined]
    amdsmi.amdsmi_get_processor_handles = lambda: [object()]  # type: ignore[attr-defined]
    sys.modules["amdsmi"] = amdsmi
    torch.cuda.current_device = lambda: 0  # sglang's Triton norm (another route) sizes its autotune configs at import


def main() -> None:
    kernels = sglang_setup.rocm()
    import aiter_norm_guard  # noqa: F401  (installs the guard before sglang's modules import)

    sglang_setup.stub_non_norm_kernels()
    if os.environ.get("BARE_PACKAGE") == "1":
        bare_package("sglang.multimodal_gen")
    amdsmi_one_gpu()
    ln = importlib.import_module(MODULE)
    norm = ln.RMSNorm(H, eps=1e-6).to(DT)
    with torch.no_grad():
        norm.weight.copy_((1 + 0.1 * torch.randn(H, generator=torch.Generator().manual_seed(3))).to(DT))
    assert norm._forward_method.__func__.__name__ == "forward_aiter", norm._forward_method
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, H, generator=g).to(DT)
    res = torch.randn(T, H, generator=g).to(DT)
    w = norm.weight.data.clone()
    cases = {  # name: (x, residual, weight)
        "safe": (x, None, w),
        "safe_residual": (x, res, w),
        "zero_rows": (x[:0], None, w),
        "zero_rows_residual": (x[:0], res[:0], w),
        "short_weight": (x, None, w[: H // 2].clone()),
        "residual_fewer_rows": (x, res[: T // 2].clone(), w),
    }
    out: dict[str, Any] = {"entry": f"{MODULE}.RMSNorm.forward_aiter"}
    for name, (xx, rr, ww) in cases.items():
        norm.weight = torch.nn.Parameter(ww, requires_grad=False)
        got: dict[str, Any] = {}
        for mode in ("unguarded", "guarded", "native"):
            sglang_setup.guard(mode)
            kernels.reset()
            args = (xx.clone(),) if rr is None else (xx.clone(), rr.clone())
            fn = norm.forward_native if mode == "native" else norm.forward  # forward: the instance's forward_aiter
            got[mode] = sglang_setup.outcome(lambda fn=fn, args=args: fn(*args))
            got[mode]["kernels"] = [c.name for c in kernels.calls]
        out[name] = got
    sglang_setup.report(out)


if __name__ == "__main__":
    main()
