"""Make sglang believe it runs on ROCm with aiter, on a CPU-only machine.

sglang picks its aiter RMSNorm path when ``torch.version.hip`` is set and
``SGLANG_USE_AITER=1`` at import of ``sglang.srt.layers.layernorm``; it then imports
the kernels from a module named ``aiter``, and 0.5.2x asks the GPU's arch at import.
:class:`EmulatedRocm` arranges exactly that, with the kernel double as ``aiter``, and
undoes it.  CPU memory plays the GPU's: ``tensor.is_cuda`` is true, except for tensors
:func:`on_host` marks (what sglang 0.5.21+ and the guard send to ``forward_native``, and
what the double's kernels fault on).  Only tests and the clearly labelled emulated
selftest use it.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard.emulation.fused import FusedDouble, QuantType
from aiter_norm_guard.emulation.group_quant_store import GroupQuantStoreDouble
from aiter_norm_guard.emulation.kernel import AiterKernelDouble
from aiter_norm_guard.emulation.rope_cache import CacheWriteDouble

EMULATED_HIP_VERSION = "6.3.0-emulated"
EMULATED_ARCH = "gfx942:sramecc+:xnack-"


class _DeviceProperties:
    def __init__(self, arch: str) -> None:
        self.gcnArchName = arch
        self.major, self.minor = (9, 5) if arch.startswith("gfx95") else (9, 4)
        self.name = f"AMD Instinct {'MI355X' if arch.startswith('gfx950') else 'MI300X'} (emulated)"


#: Where aiter keeps each function sglang's norm entries import, by module (the double's name after ':').
LAYOUT = {
    "aiter": (
        "rmsnorm2d_fwd",
        "rmsnorm2d_fwd_with_add",
        "layernorm2d_fwd",
        "fused_qk_norm_rope_cache_pts_quant_shuffle",
        "fused_qk_norm_mrope_3d_cache_pts_quant_shuffle",
    ),
    "aiter.ops": (),
    "aiter.ops.rmsnorm": ("rmsnorm_quant", "add_rmsnorm_quant", "rmsnorm2d_fwd", "rmsnorm2d_fwd_with_add"),
    "aiter.ops.enum": (),
    "aiter.ops.fused_qk_norm_rope_cache_quant": ("fused_qk_rmsnorm", "fused_qk_norm_rope_group_quant"),
    "aiter.ops.fused_qk_rmsnorm_group_quant": ("fused_qk_rmsnorm:fused_qk_rmsnorm_unified",),
    "aiter.ops.triton": (),
    "aiter.ops.triton.fused_add_rmsnorm_pad": ("fused_add_rmsnorm_pad",),
    "aiter.ops.triton.fused_fp8_quant": ("fused_rms_fp8_group_quant",),
    "aiter.ops.triton.fused_mxfp4_quant": ("fused_rms_mxfp4_quant",),
}
AITER_MODULES = tuple(LAYOUT)


def _as_aiters(fn: Callable[..., object], module: str, name: str) -> Callable[..., object]:
    """``fn`` as aiter's own function: a plain function of ``module`` with ``fn``'s signature."""

    def aiter_function(*args: object, **kwargs: object) -> object:
        return fn(*args, **kwargs)

    aiter_function.__module__, aiter_function.__name__, aiter_function.__qualname__ = module, name, name
    try:
        aiter_function.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # a callable without one: (*args, **kwargs) it is
        pass
    return aiter_function


def _aiter_modules(kernels: AiterKernelDouble) -> dict[str, types.ModuleType]:
    """``aiter`` and the submodules sglang's norm entries import from, backed by ``kernels``."""
    fused = FusedDouble(kernels)
    cache_write = CacheWriteDouble(kernels, getattr(kernels, "cache_build", "strides"))
    group_quant = GroupQuantStoreDouble(kernels)
    mods = {name: types.ModuleType(name) for name in AITER_MODULES}
    for name, mod in mods.items():
        mod.__doc__ = f"aiter_norm_guard emulation ({kernels.build} build): memory-faithful norm kernel double"
        mod.__path__ = []  # type: ignore[attr-defined]
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)  # find_spec("aiter") works
        mod.__aiter_norm_guard_emulated__ = True  # type: ignore[attr-defined]
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
        for entry in LAYOUT[name]:
            public, _, own = entry.partition(":")
            fn = getattr(kernels, own or public, None) or getattr(fused, own or public, None)
            fn = fn or getattr(group_quant, own or public, None) or getattr(cache_write, own or public)
            setattr(mod, public, _as_aiters(fn, name, public))
    mods["aiter"].__version__ = "0.1.17+emulated" if kernels.build == "legacy" else "0.1.18+emulated"  # type: ignore[attr-defined]
    mods["aiter.ops.enum"].QuantType = QuantType  # type: ignore[attr-defined]
    return mods


def _legacy_triton_shims() -> None:
    """sglang 0.4.6 imports ``default_*_dir`` from ``triton.runtime.cache``; newer triton lacks them."""
    try:
        import triton.runtime.cache as cache
    except Exception:
        return
    for kind in ("cache", "dump", "override"):
        name = f"default_{kind}_dir"
        if not hasattr(cache, name):
            path = os.path.join(os.path.expanduser("~"), ".triton", kind)
            setattr(cache, name, lambda path=path: path)


def _vllm_ops_module() -> types.ModuleType:
    """sglang 0.4.6's HIP path imports vllm's RMSNorm ops (it has no aiter path); stubs that refuse to run."""

    def not_emulated(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("vllm kernels are not emulated")

    pkg = types.ModuleType("vllm")
    ops = types.ModuleType("vllm._custom_ops")
    ops.rms_norm = ops.fused_add_rms_norm = not_emulated  # type: ignore[attr-defined]
    pkg._custom_ops = ops  # type: ignore[attr-defined]
    pkg.__path__ = []  # type: ignore[attr-defined]
    return pkg


_HOST: dict[int, torch.Tensor] = {}  # storage address -> a tensor keeping that storage alive


def on_host(t: torch.Tensor) -> torch.Tensor:
    """Mark ``t``'s storage as host memory under the emulation (its views too); returns ``t``."""
    _HOST[t.untyped_storage().data_ptr()] = t
    return t


def _emulated_is_cuda(t: torch.Tensor) -> bool:
    return t.device.type != "meta" and t.untyped_storage().data_ptr() not in _HOST


class EmulatedRocm:
    """Context manager: ROCm + aiter as sglang's layernorm module sees them at import."""

    def __init__(self, kernels: AiterKernelDouble | None = None, arch: str = EMULATED_ARCH) -> None:
        """``arch``: the GPU sglang is told it runs on (``gfx950...`` selects its gfx95 branches)."""
        self.kernels = kernels if kernels is not None else AiterKernelDouble()
        self.arch = arch
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> EmulatedRocm:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        cpu_mod = getattr(torch._C, "_cpu", None)
        self._saved = {
            "hip": torch.version.hip,
            "env": os.environ.get("SGLANG_USE_AITER"),
            "aiter": {name: sys.modules.get(name) for name in AITER_MODULES},
            "vllm": (sys.modules.get("vllm"), sys.modules.get("vllm._custom_ops")),
            "props": torch.cuda.get_device_properties,
            "amx": getattr(cpu_mod, "_is_amx_tile_supported", None),
        }
        torch.version.hip = EMULATED_HIP_VERSION  # type: ignore[misc]
        os.environ["SGLANG_USE_AITER"] = "1"
        sys.modules.update(_aiter_modules(self.kernels))
        if self._saved["vllm"][0] is None:
            vllm = _vllm_ops_module()
            sys.modules["vllm"], sys.modules["vllm._custom_ops"] = vllm, vllm._custom_ops
        if not torch.cuda.is_available():
            torch.cuda.get_device_properties = lambda *a, **k: _DeviceProperties(self.arch)  # type: ignore[assignment]
        if cpu_mod is not None and self._saved["amx"] is None:
            # sglang 0.4.10 asks this of torch at import; torch 2.14 no longer has it.
            cpu_mod._is_amx_tile_supported = lambda: False
        _legacy_triton_shims()
        torch.Tensor.is_cuda = property(_emulated_is_cuda)  # type: ignore[assignment,method-assign]

    def deactivate(self) -> None:
        if not self._saved:
            return
        if "is_cuda" in vars(torch.Tensor):
            del torch.Tensor.is_cuda
        _HOST.clear()
        torch.version.hip = self._saved["hip"]  # type: ignore[misc]
        if self._saved["env"] is None:
            os.environ.pop("SGLANG_USE_AITER", None)
        else:
            os.environ["SGLANG_USE_AITER"] = self._saved["env"]
        for name, mod in self._saved["aiter"].items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
        if self._saved["vllm"][0] is None:
            sys.modules.pop("vllm", None)
            sys.modules.pop("vllm._custom_ops", None)
        torch.cuda.get_device_properties = self._saved["props"]  # type: ignore[assignment]
        cpu_mod = getattr(torch._C, "_cpu", None)
        if cpu_mod is not None and self._saved["amx"] is None:
            delattr(cpu_mod, "_is_amx_tile_supported")
        self._saved = {}
