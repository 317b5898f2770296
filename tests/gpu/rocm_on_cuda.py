"""Import a real sglang release on a CUDA GPU so that it takes its aiter (ROCm) branches.

What works (and nothing more is changed): initialise CUDA first; freeze
``torch.cuda.device_count``; give the device properties an AMD arch name; then set
``torch.version.hip`` (and ``torch.version.cuda = None``), ``SGLANG_USE_AITER=1`` and the
``aiter`` modules (the Triton kernels of ``aiter_triton``) only while sglang's norm modules
import, and put torch back as it was.  The release comes from ``PYTHONPATH``
(``.gpu/sglang-X``, built by scripts/gpu_bundle.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

import torch

from aiter_norm_guard.emulation.rocm import _aiter_modules
from aiter_triton import TritonAiter

SUPPORT = Path(__file__).resolve().parent.parent / "support"


class _Props:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.gcnArchName = "gfx942:sramecc+:xnack-"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def load(quant: bool = False, modules: tuple[str, ...] = ()) -> tuple[types.ModuleType, types.ModuleType | None]:
    """sglang's layernorm module (and the module with the fp8 quant), on their aiter branches; ``modules``
    are imported under the same flags (with the non-norm stubs)."""
    torch.cuda.init()
    count = torch.cuda.device_count()
    torch.cuda.device_count = lambda: count  # type: ignore[assignment]
    real_props = torch.cuda.get_device_properties
    saved = (torch.version.hip, torch.version.cuda, os.environ.get("SGLANG_USE_AITER"))
    sys.modules.update(_aiter_modules(TritonAiter()))  # type: ignore[arg-type]
    torch.version.hip, torch.version.cuda = "6.3.0-on-cuda", None  # type: ignore[misc]
    torch.cuda.get_device_properties = lambda *a, **k: _Props(real_props(*a, **k))  # type: ignore[assignment]
    os.environ["SGLANG_USE_AITER"] = "1"
    quant_module = None
    try:
        import sglang.srt.layers.layernorm as ln

        if quant or modules:
            sys.path.insert(0, str(SUPPORT))
            import stubs

            stubs.install()
            stubs.platform_shims()
            for name in ("sglang.srt.layers.communicator", "sglang.srt.layers.layer_boundary.residual.add_norm")[
                : 2 if quant else 0
            ]:
                try:
                    spec = importlib.util.find_spec(name)
                except ModuleNotFoundError:  # a release without that package
                    continue
                if spec and spec.origin and "def _fused_rmsnorm_fp8_per_token_quant" in Path(spec.origin).read_text():
                    quant_module = importlib.import_module(name)
                    break
            for name in modules:
                importlib.import_module(name)
            stubs.freeze()
    finally:
        torch.version.hip, torch.version.cuda = saved[0], saved[1]  # type: ignore[misc]
        torch.cuda.get_device_properties = real_props  # type: ignore[assignment]
        if saved[2] is None:
            os.environ.pop("SGLANG_USE_AITER", None)
    assert ln._use_aiter, "sglang did not take its aiter branch"
    return ln, quant_module
