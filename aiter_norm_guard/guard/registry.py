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

from aiter_norm_guard._fork import ForkSafeLock


class Guarded(Protocol):
    original: Callable[..., Any]
    enabled: bool


_GUARDS: dict[int, tuple[weakref.ref[Any], Guarded]] = {}
_lock = ForkSafeLock()


def register(fn: Callable[..., Any], guard: Guarded) -> None:
    key = id(fn)

    # An entry leaves the table under the lock but is dropped after it: dropping a guard may drop the
    # last reference to another registered function, whose own ``forget`` then takes the lock.
    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        with _lock:
            gone = _GUARDS.pop(key) if _GUARDS.get(key, (None,))[0] is ref else None
        del gone

    with _lock:
        replaced = _GUARDS.get(key)
        _GUARDS[key] = (weakref.ref(fn, forget), guard)
    del replaced


def guard_of(fn: Any) -> Any:
    """The guard behind a function built by this package (that very object), else None."""
    entry = _GUARDS.get(id(fn))
    return entry[1] if entry is not None and entry[0]() is fn else None


def original_of(fn: Any) -> Callable[..., Any] | None:
    """The original a guarded function wraps, else None."""
    g = guard_of(fn)
    return g.original if g is not None else None


class EntryGuard:
    """What the patcher needs of a guard built around one entry: the original, the target, the switch
    ``uninstall`` turns off; :meth:`finish` makes a compiled function the entry's (its name, its identity)."""

    def __init__(
        self,
        original: Callable[..., Any],
        target: Any,
        allow_row_stride: bool = False,
        kernels: Any = None,
        upstream: Any = None,
    ) -> None:
        self.original, self.target, self.upstream = original, target, upstream
        self.allow_row_stride, self.enabled = allow_row_stride, True

    def finish(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        functools.update_wrapper(fn, self.original)
        register(fn, self)
        return fn
