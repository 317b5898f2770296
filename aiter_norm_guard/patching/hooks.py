"""Post-import hooks: run a callback when a module is imported, or now if it already is.

One mechanism, wrapt's ``register_post_import_hook``.  A hook that raises would fail the
host's import, so callbacks given here are wrapped to never raise (:func:`safe`).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable

from aiter_norm_guard._log import log_once

Callback = Callable[[types.ModuleType], object]


def safe(module_name: str, callback: Callback) -> Callable[[types.ModuleType], None]:
    """``callback`` made unable to raise into the import of ``module_name`` (failures log once)."""

    def hook(module: types.ModuleType) -> None:
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

    return hook


def when_imported(module_name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported (at once if it is).

    Raises ImportError when wrapt is missing: the caller decides what that means.
    """
    import wrapt

    wrapt.register_post_import_hook(safe(module_name, callback), module_name)
