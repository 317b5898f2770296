"""Fork safety: callbacks run in a forked child, and locks that a forked child gets fresh.

A lock some other thread of the parent held at the fork would stay held in the child forever
(no thread there releases it); every lock of the guard's own is a :class:`ForkSafeLock`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any


def after_fork(reset: Callable[[], None]) -> None:
    """Run ``reset`` in every child this process forks from now on (no-op where there is no fork)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)


class ForkSafeLock:
    """A ``threading.Lock`` (or ``RLock``, the ``factory``) that is made anew in a forked child."""

    __slots__ = ("_factory", "_lock")

    def __init__(self, factory: Callable[[], Any] = threading.Lock) -> None:
        self._factory = factory
        self._lock = factory()
        after_fork(self._renew)

    def _renew(self) -> None:
        self._lock = self._factory()

    # Nothing but the inner lock's own methods: no global or builtin is read once it is taken (at
    # interpreter shutdown, a weakref callback entering this may find the builtins gone, and a
    # failure after the acquire would leave the lock held).
    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self._lock.__exit__(*exc)
