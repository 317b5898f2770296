"""The ``aiter_norm_guard`` logger, and logging once per event per process."""

from __future__ import annotations

import logging
import threading

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
