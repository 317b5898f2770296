"""Which functions are the guard's: an identity registry (torch-free, so start-up stays light).

``functools.wraps`` copies a function's attributes to whatever wraps it, and a wrapt proxy
hashes and compares equal to what it wraps, so neither a marker attribute nor a dict keyed by
the function can tell the guard from a third party's wrapper around it.  ``id()`` plus a weak
reference can: an entry answers only for the very object it was made for, and goes away with it.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from aiter_norm_guard import _state
from aiter_norm_guard._fork import ForkSafeLock


class Guarded(Protocol):
    original: Callable[..., Any]
    enabled: bool


_lock = ForkSafeLock()


def register(fn: Callable[..., Any], guard: Guarded) -> None:
    key = id(fn)

    # An entry leaves the table under the lock but is dropped after it: dropping a guard may drop the
    # last reference to another registered function, whose own ``forget`` then takes the lock.
    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        with _lock:
            gone = _state.GUARDS.pop(key) if _state.GUARDS.get(key, (None,))[0] is ref else None
        del gone

    with _lock:
        replaced = _state.GUARDS.get(key)
        _state.GUARDS[key] = (weakref.ref(fn, forget), guard)
    del replaced


def guard_of(fn: Any) -> Any:
    """The guard behind a function built by this package (that very object), else None."""
    entry = _state.GUARDS.get(id(fn))
    return entry[1] if entry is not None and entry[0]() is fn else None


def original_of(fn: Any) -> Callable[..., Any] | None:
    """The original a guarded function wraps, else None."""
    g = guard_of(fn)
    return g.original if g is not None else None


class EntryGuard:
    """What the patcher needs of a guard built around one entry: the original, the target, the switch
    ``uninstall`` turns off, ``per_call_checks`` and ``build``.  A kind of guard sets itself up in
    :meth:`prepare`, and :meth:`compile` makes its function: the original's exact signature, compiled once,
    then the entry's (its name, its identity)."""

    def __init__(
        self,
        original: Callable[..., Any],
        target: Any,
        allow_row_stride: bool = False,
        kernels: Any = None,
        upstream: Any = None,
    ) -> None:
        self.original, self.target, self.upstream, self.kernels = original, target, upstream, kernels
        self.allow_row_stride, self.enabled = allow_row_stride, True
        self.prepare()

    def prepare(self) -> None:
        """Read the declaration and the original's signature (``self.sig``); LookupError where they do not fit."""

    def compile(self, ns: dict[str, Any], body: Callable[[str, str], list[str]]) -> Callable[..., Any]:
        """The function ``def NAME(<the original's parameters>):`` + ``body(call, slow_args)`` (the original's
        call, the slow path's arguments), in ``ns`` with ``_original``, ``_guard`` and ``_no_keywords``."""
        from aiter_norm_guard.guard.signature import signature_text

        ns.update(_original=self.original, _guard=self, _no_keywords={})
        params, call, slow_args = signature_text(self.sig, ns)
        lines = [f"def {self.original.__name__}({params}):", *(f"    {line}" for line in body(call, slow_args))]
        return self.finish("\n".join([*lines, ""]), ns)

    def finish(self, source: str, ns: dict[str, Any]) -> Callable[..., Any]:
        """``source`` compiled once in ``ns``: the entry's function (its name, its identity)."""
        from aiter_norm_guard.guard import codegen

        name = self.original.__name__
        fn = codegen.compile_function(source, ns, name, f"<aiter_norm_guard {self.target.name}>")
        functools.update_wrapper(fn, self.original)
        register(fn, self)
        return fn
