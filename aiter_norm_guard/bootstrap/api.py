"""The public API: ``install``, ``uninstall``, ``status`` and the entry points' ``activate``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from aiter_norm_guard import _state
from aiter_norm_guard._fork import ForkSafeLock
from aiter_norm_guard._log import contained, log_once
from aiter_norm_guard.bootstrap import settings, startup
from aiter_norm_guard.guard import interventions
from aiter_norm_guard.install import hooks
from aiter_norm_guard.install.patcher import PATCHER

#: How the guard got into this process, in order: import, env-bootstrap, sglang-plugin, api, cli.
_lock = ForkSafeLock()


@contained("activate-failed", "could not activate; sglang left as it was", default=False)
def activate(source: str, force: bool = False) -> bool:
    """Install the guard unless ``AITER_NORM_GUARD`` turns it off; never raises.

    ``force`` ignores the switch (tests, explicit callers who mean it).  The command line
    (``cli``) installs nothing here: each command decides.  Returns whether the guard is installed.
    """
    with _lock:
        if source not in _state.SOURCES:
            _state.SOURCES.append(source)
    if source == "cli":
        return False
    flag = settings.enabled()
    with _lock:
        _state.LAST_FLAG[:] = [flag]
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


def _sglang_importable() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["sglang"] is None
        return False


def install(force: bool = False) -> dict[str, Any]:
    """Install the guard (idempotent) and return :func:`status`; never raises."""
    activate("api", force=force)
    return status()


def uninstall() -> dict[str, Any]:
    """Remove the guard: every original function object goes back, and the switch the import
    set for children is put back as it was.  Returns :func:`status`; never raises."""
    _uninstall()
    return status()


@contained("uninstall-failed", "uninstall failed")
def _uninstall() -> None:
    PATCHER.uninstall()
    settings.restore_for_children()


def sglang_info() -> dict[str, Any]:
    """sglang's version and location, without importing it.  ``installed`` is None, with an ``error``,
    where its metadata cannot be read (not UTF-8, unreadable): installed or not cannot be told."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("sglang")
        return {"installed": True, "version": dist.version, "location": str(dist.locate_file(""))}
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "version": None, "location": None}
    except Exception as exc:
        error = f"cannot read sglang's package metadata: {type(exc).__name__}: {exc}"
        return {"installed": None, "version": None, "location": None, "error": error}


def _flag() -> dict[str, Any]:
    flag = _state.LAST_FLAG[0] if _state.LAST_FLAG else settings.enabled()
    return {"enabled": flag.value, "reason": flag.reason}


#: status() by section: (key, how to read it (looked up at each call), its value where that fails). A failing section is
#: reported (its "error", the top-level "error"), logged once, and never raised.
_SECTIONS: tuple[tuple[str, Callable[[], Any], Any], ...] = (
    ("switch", lambda: _flag(), {"enabled": None, "reason": None}),
    ("installed", lambda: PATCHER.wanted, None),
    ("sources", lambda: list(_state.SOURCES), []),
    ("row_strided", lambda: PATCHER.allow_row_stride, None),
    ("hooks", lambda: hooks.state(), {"mechanism": None, "watched": {}}),
    ("sglang", lambda: sglang_info(), {"installed": None, "version": None, "location": None}),
    ("layernorm_imported", lambda: "sglang.srt.layers.layernorm" in sys.modules, None),
    ("targets", lambda: PATCHER.report(), []),
    ("children", lambda: startup.children_inherit(), {"inherit": None}),
    ("interventions", lambda: interventions.snapshot(), []),
)


def status() -> dict[str, Any]:
    """A JSON-serializable report of the guard in this process; never raises.

    ``interventions``: how often the guard changed a call in this process, per entry and reason
    (also ``aiter_norm_guard_interventions_total`` on sglang's ``/metrics`` with ``--enable-metrics``).
    ``hooks``: the one import-hook mechanism (wrapt's post-import hooks), each watched module and what
    its hook fires on (import, reload, fresh import), and which are armed for their next execution.
    ``error``: where there is no hook (wrapt not importable), exactly what that leaves unguarded: only
    the modules imported when ``install()`` ran are patched; or which parts of this report could not be read.
    """
    out: dict[str, Any] = {}
    errors: list[str] = []
    for key, read, fallback in _SECTIONS:
        try:
            out[key] = read()
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            errors.append(f"status could not read {key}: {why}")
            out[key] = {**fallback, "error": why} if isinstance(fallback, dict) else fallback
            log_once(f"status-failed:{key}", logging.WARNING, "aiter_norm_guard: %s", errors[-1], exc_info=True)
    if out["sglang"].get("error") and not any(e.startswith("status could not read sglang") for e in errors):
        errors.append(out["sglang"]["error"])
        log_once("status-sglang-metadata", logging.WARNING, "aiter_norm_guard: %s", errors[-1])
    targets = out["targets"]
    return {
        **out.pop("switch"),
        "installed": out.pop("installed"),
        "active": any(isinstance(t, dict) and t.get("patched") for t in targets),
        "error": "; ".join(filter(None, [getattr(PATCHER, "error", None), *errors])) or None,
        **out,
    }
