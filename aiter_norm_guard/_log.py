"""The ``aiter_norm_guard`` logger, and logging once per event per process."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiter_norm_guard import _state
from aiter_norm_guard._fork import ForkSafeLock

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("aiter_norm_guard")

_lock = ForkSafeLock()  # made first: the other modules' fork handlers may log


def log_once(key: str, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
    """Log ``msg`` the first time ``key`` is seen in this process; True if it was logged."""
    with _lock:
        if key in _state.LOGGED:
            return False
        _state.LOGGED.add(key)
    logger.log(level, msg, *args, exc_info=exc_info)
    return True


def forget(prefix: str) -> None:
    """Log again, once, the events whose key starts with ``prefix`` (a forked child's own firsts)."""
    with _lock:
        _state.LOGGED.difference_update([k for k in _state.LOGGED if k.startswith(prefix)])


def contained(event: str, message: str, default: Any = None) -> Callable[[F], F]:
    """A public edge of the guard: the function's own failure never reaches the host; it is logged once per
    ``event`` (``message`` and the traceback) and ``default`` is returned instead."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def edge(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                log_once(event, logging.WARNING, "aiter_norm_guard: %s", message, exc_info=True)
                return default

        return edge  # type: ignore[return-value]

    return wrap
