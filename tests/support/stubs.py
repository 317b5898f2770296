"""Import-level stand-ins for NON-norm GPU kernel packages (aiter's other ops, ``sgl_kernel``).

sglang on ROCm imports many aiter / sgl_kernel names at module import (quantization, MoE,
activations).  Every such name is a :class:`Stub`: during import it tolerates attribute
access and calls (``fp8_utils`` calls ``aiter.get_hip_quant`` at import); after
:func:`freeze` any call raises ``NotImplementedError``, so a stubbed kernel can never take
part in a forward.  The norm kernels stay the emulation's double: a stub is handed out only
for names the emulated ``aiter`` modules lack (:func:`stubbed_norm_kernels` proves it).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

LOOKED_UP: set[str] = set()
CALLED: list[tuple[str, str]] = []
NORM_KERNELS = (
    "rmsnorm2d_fwd",
    "rmsnorm2d_fwd_with_add",
    "layernorm2d_fwd",
    "rmsnorm_quant",
    "add_rmsnorm_quant",
    "fused_add_rmsnorm_pad",
)
_frozen = [False]


class Stub:
    def __init__(self, qual: str) -> None:
        self._qual = qual

    def __repr__(self) -> str:
        return f"<stub {self._qual}>"

    def __getattr__(self, name: str) -> Stub:
        if name.startswith("__"):
            raise AttributeError(name)
        return Stub(f"{self._qual}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:
        CALLED.append((self._qual, "frozen" if _frozen[0] else "import"))
        if _frozen[0]:
            raise NotImplementedError(f"stubbed non-norm kernel {self._qual} was called")
        return Stub(f"{self._qual}()")


def _permissive(mod: types.ModuleType) -> types.ModuleType:
    def __getattr__(name: str, _m: str = mod.__name__) -> Stub:
        if name.startswith("__"):
            raise AttributeError(name)
        LOOKED_UP.add(f"{_m}.{name}")
        return Stub(f"{_m}.{name}")

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    if not hasattr(mod, "__path__"):
        mod.__path__ = []  # type: ignore[attr-defined]
    return mod


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots: set[str]) -> None:
        self.roots = roots

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in sys.modules and name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _permissive(types.ModuleType(spec.name))

    def exec_module(self, module: types.ModuleType) -> None:
        LOOKED_UP.add(module.__name__ + " (module)")


def install(roots: tuple[str, ...] = ("aiter", "sgl_kernel")) -> None:
    """Make the emulated ``aiter`` modules permissive and serve other ``aiter.*`` / ``sgl_kernel*`` as stubs."""
    for name, mod in list(sys.modules.items()):
        if mod is not None and name.split(".")[0] in roots:
            _permissive(mod)
    sys.meta_path.insert(0, _StubFinder(set(roots)))


def freeze() -> None:
    _frozen[0] = True


def stubbed_norm_kernels() -> list[str]:
    """Must be empty: no norm kernel name was ever served by a stub."""
    return sorted(q for q in LOOKED_UP if q.rsplit(".", 1)[-1] in NORM_KERNELS)


def platform_shims() -> None:
    """What a GPU-less host cannot answer: the emulated MI300X's capability (gfx942 = 9.4), and
    process groups whose tensors must live on the CPU (``parallel_state`` puts them on cuda:N
    when ``is_cuda_alike()``, which the emulated HIP makes true)."""
    import sglang.srt.utils as su
    import sglang.srt.utils.common as suc

    su.get_device_capability = suc.get_device_capability = lambda device_id=0: (9, 4)
    import sglang.srt.distributed.parallel_state as ps

    ps.is_cuda_alike = lambda: False
