"""Post-import hooks: run a callback when a module is imported, or now if it already is.

One mechanism, wrapt's ``register_post_import_hook``.  A hook that raises would fail
the host's import, so callbacks given here are wrapped to never raise.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable

from aiter_norm_guard._log import log_once


def when_imported(module_name: str, callback: Callable[[types.ModuleType], object]) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported (at once if it is)."""
    import wrapt

    def safe(module: types.ModuleType) -> None:
        try:
            callback(module)
        except Exception:
            log_once(
                f"hook-failed:{module_name}",
                logging.WARNING,
                "aiter_norm_guard: post-import hook for %s failed; module left as it was",
                module_name,
                exc_info=True,
            )

    wrapt.register_post_import_hook(safe, module_name)
