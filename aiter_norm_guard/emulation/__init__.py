"""Emulation of a ROCm + aiter host on CPU, for tests and ``selftest --emulated``.

Nothing in the guard itself imports this package: it exists so that sglang's real norm
modules can be driven through their own aiter dispatch on a machine without an AMD GPU,
against a kernel double that reads memory the way aiter's kernels do.
"""

from aiter_norm_guard.emulation.kernel import BUILDS, AiterKernelDouble, KernelCall
from aiter_norm_guard.emulation.memory import InvalidConfiguration, KernelCrash, MemoryAccessFault
from aiter_norm_guard.emulation.rocm import EmulatedRocm, on_host

__all__ = [
    "BUILDS",
    "AiterKernelDouble",
    "EmulatedRocm",
    "InvalidConfiguration",
    "KernelCall",
    "KernelCrash",
    "MemoryAccessFault",
    "on_host",
]
