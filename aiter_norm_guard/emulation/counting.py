"""Count the copies (and their bytes) that a call makes, at torch's dispatch level."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
COPY_OPS = {aten.clone.default, aten._to_copy.default, aten.copy_.default}
ALLOC_OPS = {aten.empty_like.default, aten.empty.memory_format, aten.empty_strided.default}


class CopyCounter(TorchDispatchMode):
    """Within the context: ``copies`` and ``copy_bytes`` (clone / _to_copy / copy_), and
    ``alloc_bytes`` (those plus ``empty*`` allocations).  Use with a kernel double that
    does no work (``compute=False``) so only the caller's and the guard's ops count."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0
        self.copy_bytes = 0
        self.alloc_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in COPY_OPS or func in ALLOC_OPS:
            nbytes = out.untyped_storage().nbytes() if isinstance(out, torch.Tensor) else 0
            self.alloc_bytes += nbytes
            if func in COPY_OPS:
                self.copies += 1
                self.copy_bytes += nbytes
        return out
