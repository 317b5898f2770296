"""``doctor``: what this environment will do — without importing sglang or touching a GPU.

It reads sglang's ``layernorm.py`` with ``ast`` to find ``RMSNorm.forward_aiter`` and
its upstream guard level (confirmed from the function body, not only the version),
and checks how sglang's processes would receive the guard.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

from aiter_norm_guard import settings, startup
from aiter_norm_guard.api import sglang_info
from aiter_norm_guard.targets import RMSNORM_FORWARD_AITER

PLUGIN_GROUP = "sglang.srt.plugins"
PLUGIN_NAME = "aiter_norm_guard"


def version_tuple(v: str | None) -> tuple[int, ...]:
    out = []
    for part in (v or "").split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def release_guard_level(version: str | None) -> str:
    """Upstream guard level from the release table."""
    v = version_tuple(version)
    if not v or v < (0, 4, 10):
        return "no forward_aiter"
    if v < (0, 5, 11):
        return "none"
    if v < (0, 5, 20):
        return "x without residual"
    return "full"


def _source_level(fn: ast.FunctionDef) -> str:
    """Guard level read from ``forward_aiter``'s body."""
    body = ast.unparse(fn)
    if "residual.contiguous()" in body and ".reshape(" in body:
        return "full"
    if "x.contiguous()" in body:
        return "x without residual"
    return "none"


def inspect_layernorm() -> dict[str, Any]:
    """Find the target in sglang's source: found, parameters, upstream guard level."""
    out: dict[str, Any] = {"file": None, "found": False, "parameters": None, "source_level": None}
    try:
        spec = importlib.util.find_spec("sglang")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return out
    path = Path(next(iter(spec.submodule_search_locations))) / "srt" / "layers" / "layernorm.py"
    if not path.is_file():
        return out
    out["file"] = str(path)
    cls_name, fn_name = RMSNORM_FORWARD_AITER.attribute.split(".")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == fn_name:
                    out.update(
                        found=True, parameters=[a.arg for a in item.args.args][1:], source_level=_source_level(item)
                    )
    return out


def _plugin() -> dict[str, Any]:
    eps = [ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP) if ep.name == PLUGIN_NAME]
    allowed_raw = os.environ.get("SGLANG_PLUGINS", "")
    allowed = {p.strip() for p in allowed_raw.split(",") if p.strip()}
    return {
        "visible": bool(eps),
        "allowed": bool(eps) and (not allowed or PLUGIN_NAME in allowed),
        "SGLANG_PLUGINS": allowed_raw or None,
    }


def _torch() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:
        return {"version": None, "error": repr(exc)}
    info: dict[str, Any] = {
        "version": torch.__version__,
        "hip": torch.version.hip,
        "cuda": torch.version.cuda,
        "device": None,
    }
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["device"] = f"{props.name} {getattr(props, 'gcnArchName', '')}".strip()
    except Exception as exc:
        info["device_error"] = repr(exc)
    return info


def _aiter() -> dict[str, Any]:
    try:
        found = importlib.util.find_spec("aiter") is not None
    except (ImportError, ValueError):
        found = False
    version = None
    for dist in ("amd-aiter", "aiter"):
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"importable": found, "version": version}


def diagnose() -> dict[str, Any]:
    """Everything ``doctor`` reports, and its verdict."""
    raw = startup.ENV_AT_START  # as the environment had it, not as importing the guard here set it
    flag = settings.parse_flag(
        settings.ENABLE_VAR, raw, True, "unset: on wherever aiter_norm_guard is imported or loaded as a plugin"
    )
    sg = sglang_info()
    ln = inspect_layernorm() if sg["installed"] else {"found": False}
    plugin = _plugin()
    children = startup.children_inherit(raw, use_current=False)
    plugin_route = plugin["allowed"] and version_tuple(sg["version"]) >= (0, 5, 11)
    explicit_on = settings.is_on(raw)
    if not flag.value:
        verdict, ok = "disabled", True
    elif not sg["installed"]:
        verdict, ok = "sglang not installed", not explicit_on
    elif not ln["found"]:
        verdict, ok = "nothing to guard (this sglang has no RMSNorm.forward_aiter)", not explicit_on
    elif children["inherit"] or plugin_route:
        verdict, ok = "protected", True
    else:
        verdict, ok = "not protected: sglang's processes will not load the guard", False
    return {
        "verdict": verdict,
        "ok": ok,
        "guard": {"enabled": flag.value, "reason": flag.reason, "row_strided": settings.row_strided().value},
        "sglang": {**sg, "layernorm": ln, "release_guard_level": release_guard_level(sg["version"])},
        "aiter": _aiter(),
        "torch": _torch(),
        "children": {**children, "sglang_plugin": plugin, "plugin_route": plugin_route},
    }


def format_table(d: dict[str, Any]) -> str:
    """``diagnose()`` as aligned ``key  value`` lines."""
    sg, ln = d["sglang"], d["sglang"]["layernorm"]
    ch, tr = d["children"], d["torch"]
    rows = [
        ("verdict", d["verdict"]),
        ("guard", f"{'enabled' if d['guard']['enabled'] else 'disabled'} ({d['guard']['reason']})"),
        ("row-strided zero-copy", "on" if d["guard"]["row_strided"] else "off"),
        ("sglang", f"{sg['version']} at {sg['location']}" if sg["installed"] else "not installed"),
        ("target", f"RMSNorm.forward_aiter{tuple(ln['parameters'] or ())} found" if ln.get("found") else "not found"),
        (
            "upstream guard",
            f"{sg['release_guard_level']} (release table); {ln.get('source_level') or 'n/a'} (from source)",
        ),
        (
            "aiter",
            f"importable, {d['aiter']['version'] or 'version unknown'}"
            if d["aiter"]["importable"]
            else "not importable",
        ),
        ("torch", f"{tr.get('version')} hip={tr.get('hip')} cuda={tr.get('cuda')} device={tr.get('device')}"),
        ("children: start-up file", ch["startup_file"] or "not installed (install the wheel)"),
        ("children: AITER_NORM_GUARD", ch["env"] if ch["env"] is not None else "unset"),
        (
            "children: sglang plugin",
            ("visible" if ch["sglang_plugin"]["visible"] else "not visible")
            + (", allowed" if ch["sglang_plugin"]["allowed"] else ", not allowed")
            + f" (SGLANG_PLUGINS={ch['sglang_plugin']['SGLANG_PLUGINS']})",
        ),
        ("children inherit", "yes" if ch["inherit"] or ch["plugin_route"] else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
