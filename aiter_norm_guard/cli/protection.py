"""Whether each way of starting sglang runs the guard: every link it depends on, then a verdict per way.

Two routes reach sglang's model processes: ``AITER_NORM_GUARD=1`` with the start-up file
(every Python process), and sglang's own plugin loading (>= 0.5.11, only where the processes
that run the model call ``load_plugins()``: :mod:`aiter_norm_guard.targets.entrypoints`).
Both need wrapt in the interpreter: without it the guard cannot hook sglang's imports.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

from aiter_norm_guard.bootstrap import settings, startup
from aiter_norm_guard.targets import entrypoints

PLUGIN_GROUP = "sglang.srt.plugins"
PLUGIN_NAME = "aiter_norm_guard"
STARTUP_MODULE = "_aiter_norm_guard_startup"
ADVICE = "set AITER_NORM_GUARD=1 for sglang (or start it with `aiter-norm-guard run -- ...`)"
WHEEL = ", with this package installed from its wheel (the start-up file)"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def wrapt_link() -> dict[str, Any]:
    """Whether wrapt imports in this interpreter, as the guard will import it."""
    try:
        import wrapt

        ok = callable(getattr(wrapt, "register_post_import_hook", None))
        out = {"importable": ok, "version": getattr(wrapt, "__version__", None)}
        return out if ok else {**out, "error": "wrapt has no register_post_import_hook (needs wrapt >= 1.14)"}
    except Exception as exc:
        return {"importable": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}


def plugin_link(loader: dict[str, Any]) -> dict[str, Any]:
    """The guard's ``sglang.srt.plugins`` entry point, as sglang's loader would see it."""
    eps = [ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP) if ep.name == PLUGIN_NAME]
    raw = os.environ.get("SGLANG_PLUGINS", "")
    # as sglang's load_plugins_by_group: a non-empty value is the whole whitelist (even "," or " ")
    listed = not raw or PLUGIN_NAME in {p.strip() for p in raw.split(",") if p.strip()}
    loadable = bool(eps) and all(_importable(ep.module) for ep in eps)
    return {"visible": bool(eps), "loadable": loadable, "allowed": bool(eps) and listed,
            "SGLANG_PLUGINS": raw or None, "loader": loader}  # fmt: skip


def links(root: Path | None) -> dict[str, Any]:
    """Every link the protection depends on, read from this interpreter and environment."""
    raw = settings.read(settings.ENABLE_VAR)
    loader = entrypoints.plugin_system(root) if root is not None else {"present": False, "group": None}
    return {
        "AITER_NORM_GUARD": raw,
        "wrapt": wrapt_link(),
        "startup_file": startup.startup_file(),
        "startup_module": _importable(STARTUP_MODULE),
        "plugin": plugin_link(loader),
    }


def _routes(ln: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(why nothing can protect, the env route's name or None, why the plugin route is closed or None)."""
    raw = ln["AITER_NORM_GUARD"]
    if settings.is_off(raw):
        return f"AITER_NORM_GUARD={raw} turns the guard off", None, None
    if not ln["wrapt"]["importable"]:
        why = f"wrapt is not importable here ({ln['wrapt']['error']}): the guard cannot hook sglang's imports"
        return why, None, None
    on = settings.is_on(raw) and ln["startup_file"] and ln["startup_module"]
    env = "AITER_NORM_GUARD=1 and the start-up file" if on else None
    pl, loader = ln["plugin"], ln["plugin"]["loader"]
    if not loader.get("present"):
        closed: str | None = "this sglang has no plugin loading (sglang.srt.plugins, 0.5.11+)"
    elif loader.get("group") != PLUGIN_GROUP:
        closed = f"this sglang loads plugins from {loader.get('group')!r}, not {PLUGIN_GROUP!r}"
    elif not pl["visible"]:
        closed = f"the {PLUGIN_GROUP} entry point {PLUGIN_NAME!r} is not installed (install the wheel)"
    elif not pl["loadable"]:
        closed = f"the {PLUGIN_GROUP} entry point {PLUGIN_NAME!r} names a module this interpreter cannot import"
    elif not pl["allowed"]:
        closed = f"SGLANG_PLUGINS={pl['SGLANG_PLUGINS']!r} does not list {PLUGIN_NAME}"
    else:
        closed = None
    return None, env, closed


def per_way(ways: list[dict[str, Any]], ln: dict[str, Any]) -> list[dict[str, Any]]:
    """Each way of starting with ``protected`` (True, False, None: cannot tell), ``route`` or ``reason``."""
    blocked, env, closed = _routes(ln)
    no_env = None
    if settings.is_on(ln["AITER_NORM_GUARD"]) and not env:
        no_env = "AITER_NORM_GUARD=1 reaches no process: the start-up file is not installed"
    out = []
    for way in ways:
        row = {**way, "protected": False, "route": None, "reason": None}
        if blocked:
            row["reason"] = blocked
        elif env:
            row.update(protected=True, route=env)
        elif closed is None and way["loads_plugins"]:
            where = ", ".join(e["where"] for p in way["processes"] for e in p["evidence"])
            row.update(protected=True, route=f"sglang's plugin loading ({where})")
        elif closed is None and way["loads_plugins"] is None:
            errs = [e.get("error") for p in way["processes"] for e in p["evidence"] if e["calls"] is None]
            row.update(protected=None, reason=f"cannot tell whether its model processes load plugins: {errs[0]}")
        else:
            loader = ln["plugin"]["loader"].get("present")
            own = "its model processes do not load sglang's plugins" if way["loads_plugins"] is False else None
            row["reason"] = "; ".join(filter(None, [(own or closed) if loader else closed, no_env]))
        out.append(row)
    return out


def plugin_open(ln: dict[str, Any]) -> bool:
    """Whether sglang's plugin loading would install the guard where it runs."""
    blocked, _, closed = _routes(ln)
    return blocked is None and closed is None


def advice(ln: dict[str, Any]) -> str:
    """What to do so that every way runs the guard."""
    raw = ln["AITER_NORM_GUARD"]
    if settings.is_off(raw):
        return "unset AITER_NORM_GUARD or set it to 1"
    if not ln["wrapt"]["importable"]:
        return "install wrapt in this interpreter (pip install 'wrapt>=1.14')"
    missing = not (ln["startup_file"] and ln["startup_module"])
    return ADVICE + (WHEEL if missing else "")


def summary(exposed: list[str], rows: list[dict[str, Any]], ln: dict[str, Any]) -> tuple[str, bool]:
    """The verdict over every way of starting sglang found, for the ``exposed`` entries."""
    bad = [r for r in rows if r["protected"] is False]
    unknown = [r for r in rows if r["protected"] is None]
    good = [r["name"] for r in rows if r["protected"]]
    blocked, env, _ = _routes(ln)
    if blocked:
        return f"NOT protected: {blocked}; every way of starting sglang runs {', '.join(exposed)} unguarded: " \
            f"{advice(ln)}", False  # fmt: skip
    if not rows and not env:
        return "cannot tell: no way of starting sglang found in its sources", False
    if not bad and not unknown:
        how = env or "sglang's plugin loading"
        return f"protected: {', '.join(exposed)}, for every way of starting sglang ({how})", True
    reasons: dict[str, list[str]] = {}
    for r in bad + unknown:
        reasons.setdefault(r["reason"], []).append(r["name"])
    if not good and not unknown and len(reasons) == 1:
        return f"NOT protected: {bad[0]['reason']}, for every way of starting sglang: {advice(ln)}", False
    parts = []
    if bad:
        parts.append("NOT protected for: " + "; ".join(
            f"{', '.join(names)} ({why})" for why, names in reasons.items() if not why.startswith("cannot tell")))
    if unknown:
        parts.append("cannot tell for: " + "; ".join(
            f"{', '.join(names)} ({why})" for why, names in reasons.items() if why.startswith("cannot tell")))
    if good:
        parts.append(f"protected for: {', '.join(good)}")
    return "; ".join(parts) + f": {advice(ln)}", False
