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
from aiter_norm_guard.install import hooks
from aiter_norm_guard.targets import entrypoints

PLUGIN_GROUP = "sglang.srt.plugins"
PLUGIN_NAME = "aiter_norm_guard"
STARTUP_MODULE = "_aiter_norm_guard_startup"
ADVICE = "set AITER_NORM_GUARD=1 for sglang (or start it with `aiter-norm-guard run -- ...`)"
WHEEL = ", with this package installed from its wheel (the start-up file)"
#: the switch's route for processes that need not inherit the environment (Ray's actors: sglang passes them none)
RAY_START = "the Ray cluster's workers run with AITER_NORM_GUARD=1 (e.g. `AITER_NORM_GUARD=1 ray start ...`)"
#: what the guard does without wrapt (aiter_norm_guard.install.patcher: no import hook, and status() says the same)
NO_HOOK = (
    "the guard cannot hook sglang's imports: it patches only the sglang modules already imported when it "
    "installs (none where AITER_NORM_GUARD=1 installs it at start-up; where sglang loads it as a plugin, those "
    "imported before load_plugins()), and a module imported or reloaded after that runs unguarded"
)
NOT_INHERITED = (
    f"cannot tell whether Ray's workers get AITER_NORM_GUARD=1: protected only if {RAY_START}; sglang "
    "passes no environment to its Ray actors"
)
CANNOT = "cannot tell"  #: how a reason that is neither protected nor not protected starts
#: ways of starting sglang that need a module of their own in this interpreter: without it they cannot start here
NEEDS = {"use_ray": "ray"}


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
        out = {
            "importable": ok,
            "version": getattr(wrapt, "__version__", None),
            "hooks_fire_on": hooks.fires_on(getattr(wrapt, "importer", None)) if ok else None,
        }
        return out if ok else {**out, "error": "wrapt has no register_post_import_hook (needs wrapt >= 1.14)"}
    except Exception as exc:
        return {"importable": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}


def plugin_link(loader: dict[str, Any]) -> dict[str, Any]:
    """The guard's ``sglang.srt.plugins`` entry point, as sglang's loader would see it."""
    raw = os.environ.get("SGLANG_PLUGINS", "")
    # as sglang's load_plugins_by_group: a non-empty value is the whole whitelist (even "," or " ")
    listed = not raw or PLUGIN_NAME in {p.strip() for p in raw.split(",") if p.strip()}
    srt = entry_point(PLUGIN_GROUP)
    return {
        "visible": srt["visible"],
        "loadable": srt["loadable"],
        "allowed": srt["visible"] and listed,
        "listed": listed,
        "SGLANG_PLUGINS": raw or None,
        "loader": loader,
        "groups": {PLUGIN_GROUP: srt},
    }


def entry_point(group: str) -> dict[str, bool]:
    """Whether this package registers a plugin named ``aiter_norm_guard`` in ``group``, and it imports."""
    eps = [ep for ep in importlib.metadata.entry_points(group=group) if ep.name == PLUGIN_NAME]
    return {"visible": bool(eps), "loadable": bool(eps) and all(_importable(ep.module) for ep in eps)}


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
        "importable": {m: _importable(m) for m in sorted(set(NEEDS.values()))},  # found, not imported
    }


def _blocked(ln: dict[str, Any]) -> str | None:
    """Why no route can protect anything (the switch is off, wrapt is missing), or None."""
    raw = ln["AITER_NORM_GUARD"]
    if settings.is_off(raw):
        return f"AITER_NORM_GUARD={raw} turns the guard off"
    if not ln["wrapt"]["importable"]:
        return f"wrapt is not importable here ({ln['wrapt']['error']}): {NO_HOOK}"
    return None


def _startup(ln: dict[str, Any]) -> bool:
    return bool(ln["startup_file"] and ln["startup_module"])


def _env(ln: dict[str, Any]) -> str | None:
    """The name of the route every Python process reads at start, where it is open."""
    return (
        "AITER_NORM_GUARD=1 and the start-up file" if settings.is_on(ln["AITER_NORM_GUARD"]) and _startup(ln) else None
    )


def group_closed(ln: dict[str, Any], group: str) -> str | None:
    """Why loading plugins from ``group`` does not install the guard (None: it does)."""
    pl = ln["plugin"]
    ep = pl["groups"].setdefault(group, entry_point(group))
    if not ep["visible"]:
        extra = " (install the wheel)" if group == PLUGIN_GROUP else ""
        return f"the {group} entry point {PLUGIN_NAME!r} is not installed{extra}"
    if not ep["loadable"]:
        return f"the {group} entry point {PLUGIN_NAME!r} names a module this interpreter cannot import"
    if not pl["listed"]:
        return f"SGLANG_PLUGINS={pl['SGLANG_PLUGINS']!r} does not list {PLUGIN_NAME}"
    return None


def _where(part: dict[str, Any]) -> str:
    return ", ".join(e["where"] for e in part["evidence"] if e["calls"])


def _process(
    p: dict[str, Any], launcher: dict[str, Any], ln: dict[str, Any], env: str | None
) -> tuple[bool | None, str]:
    """(protected, the route or the reason) for one kind of model process; ``env``: the switch's route, if open."""
    if any(group_closed(ln, g) is None for g in p["groups"]):
        return True, f"sglang's plugin loading ({_where(p)})"
    if env:
        return (True, env) if p["inherits"] else (None, NOT_INHERITED)
    up = [g for g in launcher["groups"] if group_closed(ln, g) is None]
    if up and p["inherits"] and _startup(ln):
        return True, f"the launching process's plugin ({_where(launcher)}) sets AITER_NORM_GUARD=1 for its children"
    if p["loads_plugins"] is None:
        why = next((e.get("error") for e in p["evidence"] if e["calls"] is None), "not found")
        return None, f"cannot tell whether its model processes load plugins: {why}"
    if p["groups"]:
        return False, group_closed(ln, p["groups"][0]) or ""
    if up and not p["inherits"]:
        return (
            False,
            "its model processes load no plugins and need not inherit the launching process's "
            f"environment: protected only if {RAY_START}",
        )
    if up:
        return (
            False,
            "its model processes load no plugins; the launching process does, but its children get the "
            "guard from it only through the start-up file, which is not installed",
        )
    if launcher["groups"]:
        return False, group_closed(ln, launcher["groups"][0]) or ""
    if not ln["plugin"]["loader"].get("present"):
        return False, "this sglang has no plugin loading (sglang.srt.plugins, 0.5.11+)"
    return False, "its model processes do not load sglang's plugins"


def per_way(ways: list[dict[str, Any]], ln: dict[str, Any], exposed: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Each way of starting with ``protected`` (True, False, None: cannot tell) and its ``route`` or ``reason``;
    ``exposed``: the exposed entries per runtime (a way runs its runtime's entries only)."""
    blocked, env = _blocked(ln), _env(ln)
    no_env = None
    if settings.is_on(ln["AITER_NORM_GUARD"]) and not env:
        no_env = "AITER_NORM_GUARD=1 reaches no process: the start-up file is not installed"
    out = []
    for way in ways:
        row = {**way, "exposed": exposed.get(way["runtime"], []), "protected": False, "route": None, "reason": None}
        need = NEEDS.get(way["name"])
        if not row["exposed"]:
            row.update(protected=True, route=f"nothing to guard: no exposed entry in the {way['runtime']} runtime")
        elif blocked:
            row["reason"] = blocked
        elif need and not ln.get("importable", {}).get(need, True):  # not held against the verdict
            row.update(
                protected=True,
                runs_here=False,
                route=f"cannot start in this interpreter: {need} is not "
                f"importable here; run doctor with a Python that has {need} to judge it",
            )
        elif env and all(p["inherits"] for p in way["processes"]):
            row.update(protected=True, route=env)
        else:
            verdicts = [_process(p, way["launcher"], ln, env) for p in way["processes"]]
            bad = [v for v in verdicts if v[0] is False] or [v for v in verdicts if v[0] is None]
            if bad:
                row.update(protected=bad[0][0], reason="; ".join(filter(None, [bad[0][1], no_env])))
            else:
                row["route"] = "; ".join(dict.fromkeys(v[1] for v in verdicts))
                row["protected"] = True
        out.append(row)
    return out


def plugin_open(ln: dict[str, Any]) -> bool:
    """Whether sglang's srt plugin loading would install the guard where it runs."""
    return (
        _blocked(ln) is None and bool(ln["plugin"]["loader"].get("present")) and group_closed(ln, PLUGIN_GROUP) is None
    )


def advice(ln: dict[str, Any], short: bool = False) -> str:
    """What to do so that every way runs the guard (``short``: for the one-line verdict)."""
    raw = ln["AITER_NORM_GUARD"]
    if settings.is_off(raw):
        return "unset AITER_NORM_GUARD or set it to 1"
    if not ln["wrapt"]["importable"]:
        return (
            "pip install 'wrapt>=1.14' into this Python"
            if short
            else "install wrapt in this interpreter (pip install 'wrapt>=1.14')"
        )
    if short:
        return (
            "set AITER_NORM_GUARD=1 (or use `aiter-norm-guard run --`)"
            if _startup(ln)
            else "install the wheel, then set AITER_NORM_GUARD=1"
        )
    return ADVICE + ("" if _startup(ln) else WHEEL)


def _names(rows: list[dict[str, Any]], of: int) -> str:
    """The ways ``rows`` (of ``of`` judged), short enough for the one-line verdict."""
    text = ", ".join(r["name"] for r in rows)
    return text if len(text) <= 32 else f"{len(rows)} of {of} ways of starting sglang"


def summary(exposed: list[str], rows: list[dict[str, Any]], ln: dict[str, Any]) -> tuple[str, bool, str]:
    """The verdict over every way of starting sglang that runs one of the ``exposed`` entries (a way that cannot
    start in this interpreter is left out), and its one-line form: the verdict and the fix, if there is one."""
    rows = [r for r in rows if r["exposed"]]
    away = [r for r in rows if r.get("runs_here") is False]
    rows = [r for r in rows if r.get("runs_here") is not False]
    note = "".join(f"; {r['name']} not judged: {r['route']}" for r in away)
    bad = [r for r in rows if r["protected"] is False]
    unknown = [r for r in rows if r["protected"] is None]
    good = [r["name"] for r in rows if r["protected"]]
    blocked, env = _blocked(ln), _env(ln)
    fix = advice(ln, short=True)
    if blocked:  # without wrapt it may run them: what sglang imports late
        off = settings.is_off(ln["AITER_NORM_GUARD"])
        runs, head = ("runs", blocked.split(" (")[0]) if off else ("may run", "wrapt is not importable here")
        return (
            f"NOT protected: {blocked}; every way of starting sglang {runs} {', '.join(exposed)} unguarded: "
            f"{advice(ln)}",
            False,
            f"NOT protected: {head}; fix: {fix}",
        )
    tail = advice(ln) if not env else "--ways judges only the ways you use"
    if not rows and away:
        return (
            f"nothing to judge{note}",
            True,
            f"nothing to judge: {_names(away, len(away))} cannot start in this interpreter",
        )
    if not rows and not env:
        why = "cannot tell: no way of starting sglang found in its sources"
        return why, False, why
    if not bad and not unknown:
        how, here = env or "sglang's plugin loading", " here" if away else ""
        return (
            f"protected: {', '.join(exposed)}, for every way of starting sglang that runs them ({how}){note}",
            True,
            f"protected: every way of starting sglang{here} runs the guard ({how})",
        )
    reasons: dict[str, list[str]] = {}
    for r in bad + unknown:
        reasons.setdefault(r["reason"], []).append(r["name"])
    if bad:
        scope = "any way of starting sglang" if not good and not unknown else _names(bad, len(rows))
        head = f"NOT protected for {scope}; fix: {fix}"
    elif all(r["reason"] == NOT_INHERITED for r in unknown):
        head = f"cannot tell for {_names(unknown, len(rows))}: start Ray's workers with AITER_NORM_GUARD=1"
    else:
        head = f"cannot tell for {_names(unknown, len(rows))}; the reasons are below"
    if not good and not unknown and len(reasons) == 1:
        return f"NOT protected: {bad[0]['reason']}, for every way of starting sglang: {tail}{note}", False, head
    parts = [
        label
        + "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items() if why.startswith(CANNOT) is tell)
        for label, judged, tell in (("NOT protected for: ", bad, False), ("cannot tell for: ", unknown, True))
        if judged
    ]
    if good:
        parts.append(f"protected for: {', '.join(good)}")
    return "; ".join(parts) + f": {tail}{note}", False, head
