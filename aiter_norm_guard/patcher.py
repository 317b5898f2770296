"""Install and uninstall the target table: patch on import, unpatch symmetrically, report.

In the spirit of OpenTelemetry's ``BaseInstrumentor``: ``install`` and ``uninstall``
are symmetric and idempotent, nothing raises into the host, and each target reports
whether it was found and patched.  Lock order is always wrapt's hook lock (taken and
released by wrapt) before this module's lock, never the reverse.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiter_norm_guard import hooks, instances
from aiter_norm_guard._log import log_once
from aiter_norm_guard._marker import WRAPPED_ATTR
from aiter_norm_guard.targets import TARGETS, Target


@dataclass
class TargetState:
    """What happened to one target in this process."""

    name: str
    module: str
    module_imported: bool = False
    found: bool = False
    patched: bool = False
    instances_rebound: int = 0
    error: str | None = None


def _resolve(module: types.ModuleType, dotted: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) for ``Class.method`` inside ``module``."""
    *path, attr = dotted.split(".")
    owner: Any = module
    for part in path:
        owner = getattr(owner, part)
    current = owner.__dict__[attr] if attr in getattr(owner, "__dict__", {}) else getattr(owner, attr)
    return owner, attr, current


class Patcher:
    """The process-wide patch state for a table of targets."""

    def __init__(self, targets: tuple[Target, ...] = TARGETS) -> None:
        self.targets = targets
        self.states = {t.name: TargetState(t.name, t.module) for t in targets}
        self.wanted = False
        self.allow_row_stride = False
        self._hooked: set[str] = set()
        self._lock = threading.RLock()

    # -- public --------------------------------------------------------------
    def install(self, allow_row_stride: bool = False) -> None:
        """Patch every target now if its module is imported, else when it is."""
        with self._lock:
            self.wanted = True
            self.allow_row_stride = allow_row_stride
            pending = [t for t in self.targets if t.module not in self._hooked]
            self._hooked.update(t.module for t in pending)
        for target in pending:  # outside our lock: wrapt calls back at once if the module is imported
            hooks.when_imported(target.module, self._make_hook(target))
        for target in self.targets:  # hooks fire once: a re-install patches imported modules itself
            mod = sys.modules.get(target.module)
            if mod is not None and target not in pending:
                self._patch(target, mod)

    def uninstall(self) -> None:
        """Put every original function object back, on the class and on live instances."""
        with self._lock:
            self.wanted = False
            for target in self.targets:
                mod = sys.modules.get(target.module)
                if mod is not None:
                    self._unpatch(target, mod)

    def report(self) -> list[dict[str, Any]]:
        """Each target's state as a JSON-serializable dict."""
        with self._lock:
            for t in self.targets:
                self.states[t.name].module_imported = t.module in sys.modules
            return [asdict(s) for s in self.states.values()]

    # -- internals -----------------------------------------------------------
    def _make_hook(self, target: Target) -> Callable[[types.ModuleType], None]:
        def on_import(module: types.ModuleType) -> None:
            self._patch(target, module)

        return on_import

    def _patch(self, target: Target, module: types.ModuleType) -> None:
        with self._lock:
            state = self.states[target.name]
            state.module_imported = True
            if not self.wanted:
                return
            try:
                owner, attr, current = _resolve(module, target.attribute)
            except (AttributeError, KeyError):
                state.found, state.error = False, f"{target.attribute} not found in {target.module}"
                log_once(
                    f"missing:{target.name}",
                    logging.WARNING,
                    "aiter_norm_guard: %s not found in %s (this sglang has no such path); nothing patched",
                    target.attribute,
                    target.module,
                )
                return
            state.found = True
            if getattr(current, WRAPPED_ATTR, None) is not None:
                state.patched = True  # installing twice wraps once
                return
            try:
                wrapper = target.wrapper_factory()(current, allow_row_stride=self.allow_row_stride)
                setattr(owner, attr, wrapper)
                if isinstance(owner, type):
                    state.instances_rebound += instances.rebind(owner, target.bound_attrs, current, wrapper)
            except Exception as exc:
                state.error = f"patching failed: {exc!r}"
                log_once(
                    f"patch-failed:{target.name}",
                    logging.WARNING,
                    "aiter_norm_guard: could not patch %s; sglang left as it was",
                    target.name,
                    exc_info=True,
                )
                self._unpatch(target, module)
                return
            state.patched, state.error = True, None
            log_once(
                f"patched:{target.name}",
                logging.INFO,
                "aiter_norm_guard: guarding %s.%s",
                target.module,
                target.attribute,
            )

    def _unpatch(self, target: Target, module: types.ModuleType) -> None:
        state = self.states[target.name]
        try:
            owner, attr, current = _resolve(module, target.attribute)
        except (AttributeError, KeyError):
            return
        original = getattr(current, WRAPPED_ATTR, None)
        if original is None:
            state.patched = False
            return
        setattr(owner, attr, original)
        if isinstance(owner, type):
            instances.rebind(owner, target.bound_attrs, current, original)
        state.patched, state.instances_rebound = False, 0


PATCHER = Patcher()
