"""Which functions are the guard's: an identity registry (torch-free, so start-up stays light).

``functools.wraps`` copies a function's attributes to whatever wraps it, so a marker attribute
would make a third party's wrapper look like the guard.  Identity does not.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol


class Guarded(Protocol):
    original: Callable[..., Any]
    enabled: bool


_GUARDS: weakref.WeakKeyDictionary[Callable[..., Any], Guarded] = weakref.WeakKeyDictionary()


def register(fn: Callable[..., Any], guard: Guarded) -> None:
    _GUARDS[fn] = guard


def guard_of(fn: Any) -> Any:
    """The guard behind a function built by this package, else None."""
    try:
        return _GUARDS.get(fn)
    except TypeError:  # not weak-referenceable
        return None


def original_of(fn: Any) -> Callable[..., Any] | None:
    """The original a guarded function wraps, else None."""
    g = guard_of(fn)
    return g.original if g is not None else None
