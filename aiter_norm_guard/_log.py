"""The ``aiter_norm_guard`` logger, and logging once per event per process.

Also :func:`after_fork`: the guard's module-level locks are re-created in a forked child (a
lock some other parent thread held at the fork would otherwise stay held there forever).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger("aiter_norm_guard")

_seen: set[str] = set()
_lock = threading.Lock()


def log_once(key: str, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
    """Log ``msg`` the first time ``key`` is seen in this process; True if it was logged."""
    with _lock:
        if key in _seen:
            return False
        _seen.add(key)
    logger.log(level, msg, *args, exc_info=exc_info)
    return True


def forget(prefix: str) -> None:
    """Log again, once, the events whose key starts with ``prefix`` (a forked child's own firsts)."""
    with _lock:
        _seen.difference_update([k for k in _seen if k.startswith(prefix)])


def after_fork(reset: Callable[[], None]) -> None:
    """Run ``reset`` in every child this process forks from now on (no-op where there is no fork)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)


def _new_lock() -> None:
    global _lock
    _lock = threading.Lock()


after_fork(_new_lock)  # registered first: the other modules' fork handlers may log
