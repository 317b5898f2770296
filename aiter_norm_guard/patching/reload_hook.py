"""Re-run a callback after every later execution of a watched module: a reload, or a fresh import.

wrapt's post-import hooks fire on the first import only ("it doesn't cope with modules being
reloaded").  A reload re-executes the module in place and rebinds its classes, and a module
popped from ``sys.modules`` and imported again is a new module object: either way a patch
made on the first import is gone.  One mechanism: a meta-path finder that, for a watched
module, asks the other finders for the spec and chains its loader so that the callback runs
after the module is executed.  On the first import wrapt's hook runs as well; the callback is
idempotent (the patcher finds its own guard and wraps once).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from aiter_norm_guard._fork import ForkSafeLock

Callback = Callable[[types.ModuleType], None]
_callbacks: dict[str, list[Callback]] = {}
_lock = ForkSafeLock()
_local = threading.local()


class _ChainedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, name: str) -> None:
        self.loader, self.name = loader, name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        self.loader.exec_module(module)
        with _lock:
            callbacks = list(_callbacks.get(self.name, ()))
        for cb in callbacks:
            cb(module)


class ReloadFinder(importlib.abc.MetaPathFinder):
    """Chains the loader of a watched module's spec whenever the module is executed (import or reload)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _callbacks or getattr(_local, "busy", False):
            return None
        _local.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _ChainedLoader(spec.loader, fullname)
                    return spec  # type: ignore[no-any-return]
            return None
        finally:
            _local.busy = False


_FINDER = ReloadFinder()


def on_reload(module_name: str, callback: Callback) -> None:
    """Call ``callback(module)`` after every future execution of ``module_name``: ``importlib.reload``,
    or an import after it was removed from ``sys.modules``."""
    with _lock:
        _callbacks.setdefault(module_name, []).append(callback)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
