"""Emulation of a ROCm + aiter host on CPU, for tests and ``selftest --emulated``.

Nothing in the guard itself imports this package: it exists so that sglang's real
``RMSNorm`` can be driven through its own aiter dispatch on a machine without an
AMD GPU, against a kernel double that reads memory the way aiter's HIP kernel does.
"""

from aiter_norm_guard_emulation.kernel import (
    AiterKernelDouble,
    InvalidConfiguration,
    KernelCall,
    MemoryAccessFault,
)
from aiter_norm_guard_emulation.rocm import EmulatedRocm

__all__ = [
    "AiterKernelDouble",
    "EmulatedRocm",
    "InvalidConfiguration",
    "KernelCall",
    "MemoryAccessFault",
]
