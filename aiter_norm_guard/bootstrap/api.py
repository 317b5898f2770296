"""The public API: ``install``, ``uninstall``, ``status`` and the entry points' ``activate``."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from aiter_norm_guard._log import after_fork, log_once
from aiter_norm_guard.bootstrap import settings, startup
from aiter_norm_guard.patching import interventions
from aiter_norm_guard.patching.patcher import PATCHER

#: How the guard got into this process, in order: import, env-bootstrap, sglang-plugin, api, cli.
SOURCES: list[str] = []
_last_flag: list[settings.Flag] = []
_lock = threading.Lock()


def _new_lock() -> None:
    global _lock
    _lock = threading.Lock()


after_fork(_new_lock)


def activate(source: str, force: bool = False) -> bool:
    """Install the guard unless ``AITER_NORM_GUARD`` turns it off; never raises.

    ``force`` ignores the switch (tests, explicit callers who mean it).  The command line
    (``cli``) installs nothing here: each command decides.  Returns whether the guard is installed.
    """
    try:
        with _lock:
            if source not in SOURCES:
                SOURCES.append(source)
        if source == "cli":
            return False
        flag = settings.enabled()
        with _lock:
            _last_flag[:] = [flag]
        if not (flag.value or force):
            log_once("disabled", logging.INFO, "aiter_norm_guard: disabled (%s)", flag.reason)
            return False
        if flag.value:  # a forced install never overrides an explicit "off" for children
            settings.enable_for_children()
        PATCHER.install(allow_row_stride=settings.row_strided().value)
        if source in ("import", "api") and not _sglang_importable():
            # explicit use only: with AITER_NORM_GUARD=1 every non-sglang Python child would say it too
            log_once(
                "sglang-absent",
                logging.WARNING,
                "aiter_norm_guard: sglang is not installed here; nothing to guard until it is imported",
            )
        return True
    except Exception:
        log_once(
            "activate-failed",
            logging.WARNING,
            "aiter_norm_guard: could not activate; sglang left as it was",
            exc_info=True,
        )
        return False


def _sglang_importable() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["sglang"] is None
        return False


def install(force: bool = False) -> dict[str, Any]:
    """Install the guard (idempotent) and return :func:`status`."""
    activate("api", force=force)
    return status()


def uninstall() -> dict[str, Any]:
    """Remove the guard: every original function object goes back, and the switch the import
    set for children is put back as it was.  Returns :func:`status`."""
    try:
        PATCHER.uninstall()
        settings.restore_for_children()
    except Exception:
        log_once("uninstall-failed", logging.WARNING, "aiter_norm_guard: uninstall failed", exc_info=True)
    return status()


def sglang_info() -> dict[str, Any]:
    """sglang's version and location, without importing it."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("sglang")
        return {"installed": True, "version": dist.version, "location": str(dist.locate_file(""))}
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "version": None, "location": None}


def status() -> dict[str, Any]:
    """A JSON-serializable report of the guard in this process.

    ``interventions``: how often the guard changed a call in this process, per entry and reason
    (also ``aiter_norm_guard_interventions_total`` on sglang's ``/metrics`` with ``--enable-metrics``).
    """
    flag = _last_flag[0] if _last_flag else settings.enabled()
    targets = PATCHER.report()
    return {
        "enabled": flag.value,
        "reason": flag.reason,
        "installed": PATCHER.wanted,
        "active": any(t["patched"] for t in targets),
        "error": PATCHER.error,
        "sources": list(SOURCES),
        "row_strided": PATCHER.allow_row_stride,
        "sglang": sglang_info(),
        "layernorm_imported": "sglang.srt.layers.layernorm" in sys.modules,
        "targets": targets,
        "children": startup.children_inherit(),
        "interventions": interventions.snapshot(),
    }
