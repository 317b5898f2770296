"""aiter_norm_guard: make sglang's aiter normalization entries safe for any input.

``import aiter_norm_guard`` installs the guard (unless ``AITER_NORM_GUARD`` is off): when
sglang's layernorm (and layer-boundary) modules are imported, or now if they already are,
every aiter norm entry they have is replaced by a guarded function (see ``targets``).
"""

import sys as _sys

from aiter_norm_guard.bootstrap.api import activate, install, status, uninstall

__version__ = "0.3.0"
__all__ = ["__version__", "install", "status", "uninstall"]


def _source() -> str:
    entering = getattr(_sys.modules.get("_aiter_norm_guard_startup"), "entering", None)
    if entering:
        return str(entering)
    argv = list(getattr(_sys, "orig_argv", ()))
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1] in ("aiter_norm_guard", "aiter_norm_guard.cli"):
            return "cli"  # python -m aiter_norm_guard: the command decides what to install
    return "import"


activate(_source())
