"""Install and uninstall the target table: patch on import (and reload), unpatch symmetrically, report.

Imports and reloads reach :meth:`Patcher.patch_module` through one mechanism, wrapt's post-import
hooks (:mod:`aiter_norm_guard.install.hooks`, where their reach and limits are stated).  Without
wrapt there is no hook: each ``install()`` patches the modules imported by then, and says so in
``error``.

In the spirit of OpenTelemetry's ``BaseInstrumentor``: ``install`` and ``uninstall`` are
symmetric and idempotent, nothing raises into the host, and each target reports what
happened to it.  The guard recognises its own functions by identity (a registry), not by
an attribute that ``functools.wraps`` would copy: under a third-party wrapper the guard is
switched off in place rather than torn out with the wrapper.  Lock order is always wrapt's
hook lock (taken and released by wrapt, or by a hook re-arming itself before its callback) before
this module's lock, never the reverse.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from aiter_norm_guard._fork import ForkSafeLock
from aiter_norm_guard._log import log_once
from aiter_norm_guard.guard.registry import guard_of
from aiter_norm_guard.install import hooks, instances
from aiter_norm_guard.install.locate import (
    describe,
    find_guard,
    has_aiter_branch,
    resolve,
    route,
    source_node,
    upstream,
)
from aiter_norm_guard.targets import TARGETS, Target, selected
from aiter_norm_guard.targets.layernorm import LAYERNORM

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
    replaced_by: str | None = None
    instances_rebound: int = 0
    upstream: str | None = None
    checks: list[str] | None = None
    error: str | None = None


class Record(NamedTuple):
    """A guard this patcher put in place: kept to switch it off, and on again without a rebuild."""

    target: Target
    owner: Any
    attr: str
    fn: Forward


class Patcher:
    """The process-wide patch state for a table of targets."""

    def __init__(self, targets: tuple[Target, ...] = TARGETS) -> None:
        self.targets = targets
        self.states = {t.name: TargetState(t.name, t.module, t.kernel) for t in targets}
        self.wanted = False
        self.allow_row_stride = False
        self.error: str | None = None
        self._no_hooks: str | None = None  # why no import hook could be registered (wrapt missing)
        self._hooked: set[str] = set()
        self._records: list[Record] = []
        self._lock = ForkSafeLock(threading.RLock)  # a parent thread may be mid-patch at a fork

    def modules(self) -> list[str]:
        return list(dict.fromkeys(t.module for t in self.targets))

    # -- public --------------------------------------------------------------
    def install(self, allow_row_stride: bool = False) -> None:
        """Patch every target now if its module is imported, else when it is (and after reloads).

        Without wrapt: only the modules imported now (``error`` says which, and what that leaves out).
        """
        with self._lock:
            self.wanted = True
            self.allow_row_stride = allow_row_stride
            pending = [m for m in self.modules() if m not in self._hooked]
            self._hooked.update(pending)
        failed: str | None = None
        for name in pending:  # outside our lock: wrapt calls back at once if the module is imported
            try:
                hooks.when_imported(name, self.patch_module)
            except ImportError as exc:
                failed = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._hooked.discard(name)  # the next install() tries again
        if pending:
            self._no_hooks = failed
        self.error = None
        if self._no_hooks:  # no hook: only what is imported now is patched (below), at this and each install()
            now = [m for m in self.modules() if m in sys.modules]
            self.error = (
                f"wrapt is not importable ({self._no_hooks}): no import hook; install() patches only the sglang "
                f"modules already imported when it runs (at the last call: {', '.join(now) or 'none'}), and a "
                "module imported or reloaded after that stays unguarded"
            )
            log_once("no-wrapt", logging.WARNING, "aiter_norm_guard: %s", self.error)
        with self._lock:
            for record in self._records:  # its own, and classes a reload replaced or someone wrapped
                self._revive(record)
        for name in self.modules():  # a re-install, or no hook at all: patch what is imported now
            module = sys.modules.get(name)
            if module is not None:
                self.patch_module(module)

    def uninstall(self) -> None:
        """Put every original function object back, on the class and on live instances.

        A guard something else now wraps or replaced stays where it is, switched off.
        """
        with self._lock:
            self.wanted = False
            for r in self._records:
                g = guard_of(r.fn)
                g.enabled = False
                if vars(r.owner).get(r.attr) is r.fn:
                    setattr(r.owner, r.attr, g.original)
                if isinstance(r.owner, type):
                    instances.rebind(r.owner, r.target.bound_attrs, r.fn, g.original)
                self.states[r.target.name].instances_rebound = 0

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
                    owner, _, current = resolve(module, t.attribute)
                except (AttributeError, KeyError):
                    continue
                fn, g = find_guard(current)
                st.patched = g is not None and g.enabled
                if st.patched and fn is not current:
                    st.beneath = describe(current)
                st.replaced_by = describe(current) if g is None and self._recorded(t, owner) else None
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

    def _recorded(self, target: Target, owner: Any) -> bool:
        """Whether this patcher put a guard for ``target`` on ``owner``."""
        return any(r.target is target and r.owner is owner for r in self._records)

    def _switch_on(self, g: Any) -> None:
        g.enabled, g.allow_row_stride = True, self.allow_row_stride

    def _revive(self, r: Record) -> None:
        """Switch a recorded guard back on; put it back where uninstall restored the original."""
        g = guard_of(r.fn)
        self._switch_on(g)
        if vars(r.owner).get(r.attr) is g.original:
            setattr(r.owner, r.attr, r.fn)
            if isinstance(r.owner, type):
                self.states[r.target.name].instances_rebound += instances.rebind(
                    r.owner, r.target.bound_attrs, g.original, r.fn
                )

    def _patch(self, target: Target, module: types.ModuleType) -> None:
        st = self.states[target.name]
        st.module_imported = True
        if not self.wanted:
            return
        try:
            owner, attr, current = resolve(module, target.attribute)
        except (AttributeError, KeyError):
            st.present, st.aiter_branch, st.selected = False, None, False
            return
        st.present = True
        fn, g = find_guard(current)
        if g is not None:  # ours already, maybe beneath another wrapper: installing twice wraps once
            self._switch_on(g)
            st.selected = st.aiter_branch = True
            return
        # Not ours, nor ours beneath: the original, a reload's fresh function, or something that replaced
        # ours (e.g. wrapped the original after an uninstall). Wrapped as on a first install: an install
        # that leaves an exposed entry unguarded while saying "installed" would be silent.
        st.selected = selected(target, module)
        node = source_node(current)
        st.aiter_branch = has_aiter_branch(target, current, node)
        if not (st.selected and st.aiter_branch):
            return
        try:
            from aiter_norm_guard.guard.cache_write import CacheViewGuard, CacheWriteGuard
            from aiter_norm_guard.guard.group_quant_store import GroupQuantStoreGuard
            from aiter_norm_guard.guard.guard import Guard  # torch: only once a target's module is imported

            kind = CacheViewGuard if target.cache_view else CacheWriteGuard if target.cache_writes else Guard
            kind = GroupQuantStoreGuard if target.group_quant else kind
            up = upstream(target, node)
            g = kind(current, target, self.allow_row_stride, route(target, module), up)
            fn = g.build()
            st.upstream = up.releases if up else "not a release read here: every check"
            st.checks = g.per_call_checks()
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
        self._records.append(Record(target, owner, attr, fn))
        st.error = None
        where = f"{module.__name__}.{target.attribute}"
        log_once(f"patched:{target.name}", logging.INFO, "aiter_norm_guard: guarding %s", where)


PATCHER = Patcher()
