"""Install and uninstall the target table: patch on import (and reload), unpatch symmetrically, report.

In the spirit of OpenTelemetry's ``BaseInstrumentor``: ``install`` and ``uninstall`` are
symmetric and idempotent, nothing raises into the host, and each target reports what
happened to it.  The guard recognises its own functions by identity (a registry), not by
an attribute that ``functools.wraps`` would copy: under a third-party wrapper the guard is
switched off in place rather than torn out with the wrapper.  Lock order is always wrapt's
hook lock (taken and released by wrapt) before this module's lock, never the reverse.
"""

from __future__ import annotations

import ast
import inspect
import logging
import sys
import textwrap
import threading
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiter_norm_guard import hooks, instances, reload_hook, source_scan
from aiter_norm_guard._log import log_once
from aiter_norm_guard.registry import guard_of
from aiter_norm_guard.targets import LAYERNORM, TARGETS, Target

Forward = Callable[..., Any]


@dataclass
class TargetState:
    """What happened to one target in this process."""

    name: str
    module: str
    kernel: str
    module_imported: bool = False
    present: bool = False
    aiter_branch: bool | None = None
    selected: bool = False
    patched: bool = False
    beneath: str | None = None
    instances_rebound: int = 0
    error: str | None = None


def _resolve(module: types.ModuleType, dotted: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) for ``Class.method`` or ``function`` in ``module``.

    The attribute must be the owner's own (an inherited method is another entry: KeyError).
    """
    *path, attr = dotted.split(".")
    owner: Any = module
    for part in path:
        owner = getattr(owner, part)
    return owner, attr, vars(owner)[attr]


def find_guard(fn: Any, depth: int = 16) -> tuple[Any, Any]:
    """(the guarded function, its Guard) at ``fn`` or beneath it along ``__wrapped__``."""
    for _ in range(depth):
        g = guard_of(fn)
        if g is not None or fn is None:
            return fn, g
        fn = getattr(fn, "__wrapped__", None)
    return None, None


def describe(fn: Any) -> str:
    """Where a function really comes from (``functools.wraps`` copies names, not code)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return type(fn).__name__
    return f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})"


def has_aiter_branch(target: Target, fn: Any) -> bool | None:
    """Whether ``fn``'s source reaches the target's aiter bindings; None when there is no source."""
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn)))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError, ValueError):
        return None
    return isinstance(node, ast.FunctionDef) and source_scan.has_aiter_branch(node, target.aiter_calls)


class Patcher:
    """The process-wide patch state for a table of targets."""

    def __init__(self, targets: tuple[Target, ...] = TARGETS) -> None:
        self.targets = targets
        self.states = {t.name: TargetState(t.name, t.module, t.kernel) for t in targets}
        self.wanted = False
        self.allow_row_stride = False
        self.error: str | None = None
        self._hooked: set[str] = set()
        self._built: list[tuple[Target, Any, Forward]] = []
        self._lock = threading.RLock()

    def modules(self) -> list[str]:
        return list(dict.fromkeys(t.module for t in self.targets))

    # -- public --------------------------------------------------------------
    def install(self, allow_row_stride: bool = False) -> None:
        """Patch every target now if its module is imported, else when it is (and after reloads)."""
        with self._lock:
            self.wanted = True
            self.allow_row_stride = allow_row_stride
            pending = [m for m in self.modules() if m not in self._hooked]
            self._hooked.update(pending)
        for name in pending:  # outside our lock: wrapt calls back at once if the module is imported
            reload_hook.on_reload(name, hooks.safe(name, self.patch_module))
            try:
                hooks.when_imported(name, self.patch_module)
            except ImportError as exc:
                self.error = f"wrapt is not importable ({exc}): modules imported from now on stay unguarded"
                log_once("no-wrapt", logging.WARNING, "aiter_norm_guard: %s", self.error)
        for name in self.modules():  # hooks fire once: a re-install patches imported modules itself
            module = sys.modules.get(name)
            if module is not None:
                self.patch_module(module)

    def uninstall(self) -> None:
        """Put every original function object back, on the class and on live instances."""
        with self._lock:
            self.wanted = False
            for target in self.targets:
                module = sys.modules.get(target.module)
                if module is not None:
                    self._unpatch(target, module)
            for _, _, fn in self._built:  # guards of classes replaced by a reload, too
                g = guard_of(fn)
                if g is not None:
                    g.enabled = False

    def report(self) -> list[dict[str, Any]]:
        """Each target's state, read from the live modules, as a JSON-serializable dict."""
        with self._lock:
            for t in self.targets:
                st = self.states[t.name]
                module = sys.modules.get(t.module)
                st.module_imported = module is not None
                st.patched, st.beneath = False, None
                if module is None:
                    continue
                try:
                    _, _, current = _resolve(module, t.attribute)
                except (AttributeError, KeyError):
                    continue
                fn, g = find_guard(current)
                st.patched = g is not None and g.enabled
                if st.patched and fn is not current:
                    st.beneath = describe(current)
            return [asdict(s) for s in self.states.values()]

    # -- internals -----------------------------------------------------------
    def patch_module(self, module: types.ModuleType) -> None:
        """Patch the targets that live in ``module`` (the import and reload hook)."""
        with self._lock:
            mine = [t for t in self.targets if t.module == module.__name__]
            for target in mine:
                self._patch(target, module)
            guardable = any(self.states[t.name].present and self.states[t.name].aiter_branch for t in mine)
            if self.wanted and module.__name__ == LAYERNORM and not guardable:
                log_once(
                    "nothing-to-guard",
                    logging.WARNING,
                    "aiter_norm_guard: %s has no aiter branch in %s (this sglang has no aiter norm path); "
                    "nothing patched",
                    LAYERNORM,
                    ", ".join(t.attribute for t in mine),
                )

    def _patch(self, target: Target, module: types.ModuleType) -> None:
        st = self.states[target.name]
        st.module_imported = True
        if not self.wanted:
            return
        try:
            owner, attr, current = _resolve(module, target.attribute)
        except (AttributeError, KeyError):
            st.present, st.aiter_branch, st.selected = False, None, False
            return
        st.present = True
        st.selected = all(bool(getattr(module, flag, False)) for flag in target.selected_by)
        st.aiter_branch = has_aiter_branch(target, current)
        if st.aiter_branch is None:  # no source: the names it uses are the best evidence left
            code = getattr(inspect.unwrap(current), "__code__", None)
            st.aiter_branch = bool(code and set(target.aiter_calls) & set(code.co_names))
        if not (st.selected and st.aiter_branch):
            return
        fn, g = find_guard(current)
        if g is not None:  # ours already: installing twice wraps once
            if not g.enabled:
                g.enabled = True
                if isinstance(owner, type):
                    st.instances_rebound += instances.rebind(owner, target.bound_attrs, g.original, fn)
            return
        try:
            from aiter_norm_guard.guard import make_guarded  # torch: only once a target's module is imported

            fn = make_guarded(current, target, allow_row_stride=self.allow_row_stride)
            setattr(owner, attr, fn)
            if isinstance(owner, type):
                st.instances_rebound += instances.rebind(owner, target.bound_attrs, current, fn)
        except Exception as exc:
            st.error = f"patching failed: {exc!r}"
            log_once(
                f"patch-failed:{target.name}",
                logging.WARNING,
                "aiter_norm_guard: could not patch %s; sglang left as it was",
                target.name,
                exc_info=True,
            )
            setattr(owner, attr, current)
            return
        self._built.append((target, owner, fn))
        st.error = None
        where = f"{module.__name__}.{target.attribute}"
        log_once(f"patched:{target.name}", logging.INFO, "aiter_norm_guard: guarding %s", where)

    def _unpatch(self, target: Target, module: types.ModuleType) -> None:
        try:
            owner, attr, current = _resolve(module, target.attribute)
        except (AttributeError, KeyError):
            return
        fn, g = find_guard(current)
        if g is None:
            return
        g.enabled = False
        if fn is current:
            setattr(owner, attr, g.original)
        if isinstance(owner, type):
            instances.rebind(owner, target.bound_attrs, fn, g.original)
        self.states[target.name].instances_rebound = 0


PATCHER = Patcher()
