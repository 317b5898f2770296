"""Device memory as aiter's kernels see it: typed pointers, a row pitch, and nothing else.

A kernel gets ``data_ptr()`` as a pointer of the activation's dtype and ``stride(0)`` as a
plain element count; it never looks at the tensor's shape, other strides or dtype.  These
helpers index a tensor's whole storage that way.  An access outside the storage raises
:class:`MemoryAccessFault` (on hardware: "Memory access fault by GPU node", or garbage read
from a neighbouring allocation); anything inside it is read as is, so a wrong layout gives
wrong values.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class MemoryAccessFault(RuntimeError):
    """The emulated kernel touched memory outside a tensor's storage."""


class InvalidConfiguration(RuntimeError):
    """The emulated kernel was launched with an empty grid (zero rows)."""


class KernelCrash(RuntimeError):
    """What would kill the process on hardware (integer division by zero in the launcher)."""


def flat(t: Tensor, dtype: torch.dtype) -> Tensor:
    """The whole storage behind ``t``, as a flat 1-D tensor of ``dtype``."""
    storage = t.untyped_storage()
    count = storage.nbytes() // torch.empty((), dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype, device=t.device).set_(storage, 0, (count,), (1,))


def base(t: Tensor, dtype: torch.dtype) -> int:
    """``t.data_ptr()`` as an element index of ``dtype`` into its storage."""
    return int(t.storage_offset()) * t.element_size() // torch.empty((), dtype=dtype).element_size()


def at(t: Tensor, dtype: torch.dtype, index: Tensor, fault: str) -> tuple[Tensor, Tensor]:
    """Flat storage of ``t`` as ``dtype``, and ``index`` (elements of ``dtype``) from ``t``'s pointer: a
    :class:`MemoryAccessFault` saying ``fault`` where any of it leaves the storage."""
    mem = flat(t, dtype)
    index = base(t, dtype) + index
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= mem.numel()):
        raise MemoryAccessFault(f"Memory access fault by GPU node (emulated): {fault}")
    return mem, index


def rows(
    t: Tensor, m: int, n: int, what: str, dtype: torch.dtype, pitch: int | None = None, col: int = 1
) -> tuple[Tensor, Tensor]:
    """Flat storage of ``t`` read as ``dtype``, and the (m, n) element indices a kernel touches.

    Row ``i``, column ``j`` is element ``base + i * pitch + j * col``: ``pitch`` defaults to
    ``t.stride(0)``, the column step to 1 (the unit last stride the HIP/CK kernels assume).
    """
    mem = flat(t, dtype)
    start = base(t, dtype)
    pitch = t.stride(0) if pitch is None else pitch
    corners = [start, start + (m - 1) * pitch, start + (n - 1) * col, start + (m - 1) * pitch + (n - 1) * col]
    if min(corners) < 0 or max(corners) >= mem.numel():
        raise MemoryAccessFault(
            f"Memory access fault by GPU node (emulated): {what} row {m - 1} reaches element "
            f"{max(corners)} of a storage of {mem.numel()} (shape {tuple(t.shape)}, stride {t.stride()})"
        )
    r = torch.arange(m, device=t.device).unsqueeze(1) * pitch
    return mem, start + r + torch.arange(n, device=t.device) * col


def vector(t: Tensor, n: int, dtype: torch.dtype, what: str) -> Tensor:
    """The ``n`` elements of ``dtype`` at ``t``'s pointer, read contiguously (how weights are read)."""
    mem = flat(t, dtype)
    start = base(t, dtype)
    if start + n > mem.numel():
        raise MemoryAccessFault(
            f"Memory access fault by GPU node (emulated): {what} read of {n} elements past its storage "
            f"of {mem.numel() - start} from its pointer"
        )
    return mem[start : start + n]
