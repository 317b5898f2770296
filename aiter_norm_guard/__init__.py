"""aiter_norm_guard: make sglang's aiter RMSNorm safe for any input layout.

``import aiter_norm_guard`` installs the guard (unless ``AITER_NORM_GUARD`` is off):
when ``sglang.srt.layers.layernorm`` is imported, or now if it already is,
``RMSNorm.forward_aiter`` is replaced by a layout-canonicalizing wrapper.
"""

import sys as _sys

from aiter_norm_guard.api import activate, install, status, uninstall

__version__ = "0.1.0"
__all__ = ["__version__", "install", "status", "uninstall"]

activate(getattr(_sys.modules.get("_aiter_norm_guard_startup"), "entering", None) or "import")
