"""``doctor``: what this environment will do — without importing sglang, aiter or torch, or touching a GPU.

It reads sglang's sources with ``ast`` to find every entry of the target table, whether its
aiter branch exists, what its release does itself (by fingerprint) and so what the guard checks
per call, reads aiter's version or source
to tell which routing its kernels use, and checks how sglang's processes receive the guard.
On a host that takes no aiter path (torch not a ROCm build, no aiter) sglang is not affected;
``as_rocm`` judges as if it were a ROCm host with aiter (to vet an image before deploying it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiter_norm_guard.bootstrap import settings, startup
from aiter_norm_guard.bootstrap.api import sglang_info
from aiter_norm_guard.cli import protection
from aiter_norm_guard.cli.host import _spec_dir, aiter_routing, no_aiter_path, torch_info
from aiter_norm_guard.guard import interventions
from aiter_norm_guard.kernels.needs import needs, still_needed
from aiter_norm_guard.targets import LAYERNORM, TARGETS, Target, entrypoints, source_scan
from aiter_norm_guard.targets.callsites import CALL_SITES, GUARDED, module_name, present_sites
from aiter_norm_guard.targets.upstream import UPSTREAM, upstream_in_source

DIFFUSION = "sglang.multimodal_gen."  #: modules of the diffusion runtime (its own processes and plugins)
NO_SGLANG = "this interpreter has no sglang; run doctor with the Python that runs sglang"


class UnknownWay(ValueError):
    """``--ways`` names a way of starting sglang this sglang does not have (a usage error)."""


def inspect_target(root: Path, target: Target) -> dict[str, Any]:
    """One entry, read from its module's source under sglang's package directory ``root``."""
    path = root.joinpath(*target.module.split(".")[1:]).with_suffix(".py")
    out: dict[str, Any] = {
        "name": target.name,
        "kernel": target.kernel,
        "file": str(path),
        "present": False,
        "runtime": "diffusion" if target.module.startswith(DIFFUSION) else "srt",
    }
    tree = source_scan.read(path) if path.is_file() else source_scan.ABSENT
    if isinstance(tree, str):
        if tree != source_scan.ABSENT:
            out["error"] = tree
        elif target.module == LAYERNORM:  # every sglang has it: its absence is a broken install
            out["error"] = f"cannot read {path}: the file is missing"
        else:
            out["note"] = "module not in this sglang"
        return out
    out.update(source_scan.entry_report(tree, target.attribute, target.aiter_calls, target.binding))
    if out["present"] and out["aiter_branch"]:
        out.update(guard_checks(tree, target))
    return out


def guard_checks(tree: Any, target: Target) -> dict[str, Any]:
    """What the release's entry does itself (its row in the upstream table, by fingerprint) and so
    what the guard checks per call: the kernels' contract less that."""
    digest, row = upstream_in_source(tree, target.name, target.attribute)
    contract = needs(*target.kernels)
    if row is not None:
        release = f"{row.releases}: {row.how}"
    elif target.name in UPSTREAM:
        release = f"not a release read here (fingerprint {digest}): the guard checks everything"
    else:
        release = "none (the entry is aiter's own function, or sglang checks nothing before it)"
    done = (row.alone, row.with_rows) if row is not None else ((), ())
    checks = still_needed(contract, *done, groups=len(target.feed.groups))
    return {"release_does": release, "guard_checks": list(checks)}


def call_sites(root: Path | None) -> list[dict[str, Any]]:
    """Every aiter norm call site of released sglang (``targets.callsites``): does this sglang make its aiter
    call (read from its source), guarded or why not."""
    found = present_sites(root) if root is not None else [False] * len(CALL_SITES)
    return [
        {
            "site": site.site,
            "modules": [module_name(f) for f in site.files],
            "present": present,
            "status": site.status,
            "guards": list(site.guards),
            "why": site.why,
        }
        for site, present in zip(CALL_SITES, found, strict=True)
    ]


def _verdict(
    sg: dict[str, Any],
    targets: list[dict[str, Any]],
    exposed: list[str],
    ways: list[dict[str, Any]],
    ln: dict[str, Any],
    no_path: str | None,
) -> tuple[str, bool, str]:
    """(the verdict, ok, its one-line form: the verdict in a short sentence, and the fix where there is one)."""
    unreadable = [t for t in targets if "error" in t]
    if sg["installed"] is False:
        nowhere = "this Python has no sglang (run doctor with the Python that runs sglang)"
        return "nothing to guard: sglang is not installed in this interpreter", True, f"nothing to guard: {nowhere}"
    if no_path:
        return (
            f"this host takes no aiter path ({no_path}): sglang here is not affected; the listing below is "
            "what a ROCm host with this sglang would need (--as-rocm judges it so)",
            True,
            f"not affected: this host takes no aiter path ({no_path})",
        )
    if sg["installed"] is None:
        return f"cannot tell: {sg['error']}", False, f"cannot tell: {sg['error'].split(': ')[0]}"
    if unreadable:
        t = unreadable[0]
        what = f"cannot read sglang's {Path(t['file']).name}" if "file" in t else t["error"].split(": ")[0]
        return f"cannot tell: {t['error']}", False, f"cannot tell: {what}"
    if not exposed:
        none = "this sglang has no aiter norm entry"
        return f"nothing to guard ({none})", True, f"nothing to guard: {none}"
    return protection.summary(exposed, ways, ln)


def interventions_help() -> dict[str, Any]:
    """How to read the guard's interventions (counted in the processes that run the model)."""
    return {
        "in_process": "aiter_norm_guard.status()['interventions'] (per entry and reason, in that process)",
        "prometheus": f"{interventions.METRIC}_total{{entry,reason,mode}} on sglang's /metrics with --enable-metrics "
        "(summed over its processes; needs prometheus_client)",
        "prometheus_client": protection._importable("prometheus_client"),
    }


def diagnose(only: tuple[str, ...] = (), as_rocm: bool = False) -> dict[str, Any]:
    """Everything ``doctor`` reports, and its verdict (over the ways of starting sglang named in
    ``only``, where given: those a deployment uses; every way found otherwise); ``as_rocm``: as if
    this host were ROCm with aiter, whatever its torch and aiter are."""
    raw = settings.read(settings.ENABLE_VAR)
    flag = settings.parse_flag(
        settings.ENABLE_VAR, raw, True, "unset: on wherever aiter_norm_guard is imported or loaded as a plugin"
    )
    sg = sglang_info()
    root = _spec_dir("sglang") if sg["installed"] is not False else None
    targets = [inspect_target(root, t) for t in TARGETS] if root is not None else []
    if sg["installed"] is not False and root is None:
        targets = [{"name": "sglang", "error": "sglang is installed but its package directory cannot be found"}]
    ln = protection.links(root)
    hot = [t for t in targets if t.get("present") and t.get("aiter_branch")]  # the exposed entries
    per_runtime: dict[str, list[str]] = {}
    for t in hot:
        per_runtime.setdefault(t["runtime"], []).append(t["name"])
    ways = protection.per_way(entrypoints.scan(root) if root is not None else [], ln, per_runtime)
    unknown = sorted(set(only) - {w["name"] for w in ways})
    if unknown:
        raise UnknownWay(f"no such way of starting sglang here: {unknown}; known: {[w['name'] for w in ways]}")
    tr, aiter = torch_info(), aiter_routing()
    no_path = None if as_rocm else no_aiter_path(tr, aiter)
    judged = [w for w in ways if not only or w["name"] in only]
    verdict, ok, headline = _verdict(sg, targets, [t["name"] for t in hot], judged, ln, no_path)
    warnings = [] if root is not None or sg["installed"] is None else [NO_SGLANG]
    children = startup.children_inherit(raw, use_current=False)
    plugin_route = protection.plugin_open(ln)
    return {
        "verdict": verdict,
        "ok": ok,
        "headline": headline,  # the verdict in one short line, with the fix where there is one
        "warnings": warnings,
        "host": {"takes_aiter_path": no_path is None, "as_rocm": as_rocm, "why_not": no_path},
        "guard": {"enabled": flag.value, "reason": flag.reason, "row_strided": settings.row_strided().value},
        "sglang": sg,
        "targets": targets,
        "ways": ways,
        "call_sites": call_sites(root),
        "links": ln,
        "aiter": aiter,
        "torch": tr,
        "children": {**children, "sglang_plugin": ln["plugin"], "plugin_route": plugin_route},
        "interventions": interventions_help(),
    }


def _target_line(t: dict[str, Any]) -> str:
    if "error" in t:
        return f"ERROR {t['error']}"
    if not t.get("present"):
        return "not in this sglang"
    if not t.get("aiter_branch"):
        return "present, no aiter branch (nothing to guard)"
    checks = ", ".join(t["guard_checks"])
    return f"EXPOSED; the release itself: {t['release_does']}; the guard checks per call: {checks}"


def _way_line(w: dict[str, Any]) -> str:
    if not w["exposed"]:
        return w["route"]
    if w.get("runs_here") is False:
        return f"not judged: {w['route']}"
    if w["protected"]:
        return f"protected ({w['route']})"
    if w["protected"] is None and w["reason"].startswith("cannot tell"):
        return w["reason"]
    return f"{'cannot tell' if w['protected'] is None else 'NOT protected'}: {w['reason']}"


def _link_rows(ln: dict[str, Any]) -> list[tuple[str, str]]:
    wr, pl, switch = ln["wrapt"], ln["plugin"], ln["AITER_NORM_GUARD"]
    startup = ln["startup_file"] or "not installed (install the wheel)"
    if ln["startup_file"] and not ln["startup_module"]:
        startup += f"; {protection.STARTUP_MODULE} NOT importable"
    loads = (
        f"this sglang loads {pl['loader'].get('group')}"
        if pl["loader"].get("present")
        else "this sglang loads no plugins"
    )
    plugin = f"{'visible' if pl['visible'] else 'not visible'}, {'' if pl['allowed'] else 'not '}allowed"
    return [
        ("wrapt", f"{wr['version']} (importable)" if wr["importable"] else f"NOT importable: {wr['error']}"),
        ("start-up file", startup),
        ("AITER_NORM_GUARD", switch if switch is not None else "unset"),
        ("sglang plugin", f"{plugin} (SGLANG_PLUGINS={pl['SGLANG_PLUGINS']}); {loads}"),
    ]


def format_table(d: dict[str, Any]) -> str:
    """``diagnose()``: its one-line verdict first, then the details as aligned ``key  value`` lines."""
    sg, tr, iv, guard = d["sglang"], d["torch"], d["interventions"], d["guard"]
    rows = [("verdict", d["verdict"]), *(("warning", w) for w in d["warnings"])]
    rows += [
        ("guard", f"{'enabled' if guard['enabled'] else 'disabled'} ({guard['reason']})"),
        ("row-strided zero-copy", "on" if guard["row_strided"] else "off"),
        ("sglang", f"{sg['version']} at {sg['location']}" if sg["installed"] else sg.get("error") or "not installed"),
    ]
    if d["host"]["as_rocm"]:
        rows.append(("host", "judged as a ROCm host with aiter (--as-rocm), whatever this host's torch and aiter are"))
    rows += [(t["name"], _target_line(t)) for t in d["targets"]]
    here = [c for c in d["call_sites"] if c["present"]]
    left = [c for c in here if c["status"] != GUARDED]
    rows.append(
        (
            "call sites",
            f"{len(here)} known aiter norm call sites are in this sglang (by their aiter call); "
            f"{len(here) - len(left)} guarded (the entries above); not by the guard:",
        )
    )
    rows += [(f"  {c['site']}", f"{c['status']}: {c['why']}") for c in left]
    rows += [
        ("aiter", f"{d['aiter']['version'] or 'version unknown'}; {d['aiter']['routing']}"),
        ("torch", f"{tr.get('version')} hip={tr.get('hip')} cuda={tr.get('cuda')} device={tr.get('device')}"),
        *_link_rows(d["links"]),
        *((f"way: {w['name']}", _way_line(w)) for w in d["ways"]),
        (
            "interventions",
            f"{iv['in_process']}; {iv['prometheus']}" + ("" if iv["prometheus_client"] else " (not installed here)"),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join([d["headline"], ""] + [f"{k:<{width}}  {v}" for k, v in rows])
