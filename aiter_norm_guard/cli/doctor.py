"""``doctor``: what this environment will do — without importing sglang or aiter, or touching a GPU.

It reads sglang's sources with ``ast`` to find every entry of the target table, whether its
aiter branch exists and which checks upstream already has, reads aiter's version or source
to tell which routing its kernels use, and checks how sglang's processes receive the guard.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from aiter_norm_guard.bootstrap import settings, startup
from aiter_norm_guard.bootstrap.api import sglang_info
from aiter_norm_guard.targets import LAYERNORM, TARGETS, Target, source_scan

PLUGIN_GROUP = "sglang.srt.plugins"
PLUGIN_NAME = "aiter_norm_guard"
#: What the guard checks on every entry: (check, the upstream check that covers it, if any).
GUARD_CHECKS = (
    ("x layout (rank, strides)", "x rows"),
    ("residual / post layout", "residual rows"),
    ("zero rows", "zero rows"),
    ("weight dtype", "weight dtype"),
    ("weight length (hidden size)", None),
    ("residual shape and dtype", None),
    ("strided weight", None),
)


def version_tuple(v: str | None) -> tuple[int, ...]:
    """Release numbers only: ``0.5.3rc0`` -> (0, 5, 3), ``0.5.10.post1`` -> (0, 5, 10)."""
    out = []
    for part in (v or "").split(".")[:3]:
        digits = re.match(r"\d+", part)
        out.append(int(digits.group()) if digits else 0)
    return tuple(out)


def _spec_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def inspect_target(root: Path, target: Target) -> dict[str, Any]:
    """One entry, read from its module's source under sglang's package directory ``root``."""
    path = root.joinpath(*target.module.split(".")[1:]).with_suffix(".py")
    out: dict[str, Any] = {"name": target.name, "kernel": target.kernel, "file": str(path), "present": False}
    if not path.is_file():
        if target.module == LAYERNORM:  # every sglang has it: its absence is a broken install
            out["error"] = f"cannot read {path}: the file is missing"
        else:
            out["note"] = "module not in this sglang"
        return out
    try:
        tree = source_scan.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        out["error"] = f"cannot read {path}: {type(exc).__name__}: {exc}"
        return out
    out.update(source_scan.entry_report(tree, target.attribute, target.aiter_calls))
    if out["present"] and out["aiter_branch"]:
        found = set(out["checks"])
        out["guard_adds"] = [check for check, upstream in GUARD_CHECKS if upstream is None or upstream not in found]
    return out


def aiter_routing() -> dict[str, Any]:
    """The installed aiter: version, and which kernels its RMSNorm entry points route to."""
    version = None
    for dist in ("amd-aiter", "aiter"):
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    root = _spec_dir("aiter")
    if root is None:
        return {"importable": False, "version": version, "routing": "unknown (aiter is not installed here)"}
    try:
        text = (root / "ops" / "rmsnorm.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if "_use_hip_common" in text:
        routing = (
            ">= v0.1.18: 2-D bf16/fp16 with hidden <= 8192 -> HIP kernel (n = size(1), pitch stride(0), no "
            "weight or zero-row check); anything else -> opus (copies, asserts on the weight)"
        )
    elif "rmsnorm2d_fwd" in text:
        routing = (
            "<= v0.1.17: every rank -> HIP kernel (hidden <= 8192; n = size(1)) or CK (n = size(-1)); "
            "pitch stride(0), no weight or zero-row check"
        )
    else:
        routing = "unknown (aiter/ops/rmsnorm.py not readable)"
    return {"importable": True, "version": version, "routing": routing}


def _plugin() -> dict[str, Any]:
    eps = [ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP) if ep.name == PLUGIN_NAME]
    allowed_raw = os.environ.get("SGLANG_PLUGINS", "")
    # as sglang's load_plugins_by_group: a non-empty value is the whole whitelist (even "," or " ")
    allowed = not allowed_raw or PLUGIN_NAME in {p.strip() for p in allowed_raw.split(",") if p.strip()}
    return {"visible": bool(eps), "allowed": bool(eps) and allowed, "SGLANG_PLUGINS": allowed_raw or None}


def _torch() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:
        return {"version": None, "error": repr(exc)}
    info: dict[str, Any] = {"version": torch.__version__, "hip": torch.version.hip, "cuda": torch.version.cuda}
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["device"] = f"{props.name} {getattr(props, 'gcnArchName', '')}".strip()
    except Exception as exc:
        info["device_error"] = repr(exc)
    return info


def _verdict(flag: settings.Flag, sg: dict[str, Any], targets: list[dict[str, Any]], route: bool,
             explicit_on: bool) -> tuple[str, bool]:  # fmt: skip
    unreadable = [t for t in targets if "error" in t]
    exposed = [t["name"] for t in targets if t.get("present") and t.get("aiter_branch")]
    if not flag.value:
        return "disabled (AITER_NORM_GUARD is off): sglang runs unguarded", True
    if not sg["installed"]:
        return "sglang not installed", not explicit_on
    if unreadable:
        return f"cannot tell: {unreadable[0]['error']}", False
    if not exposed:
        return "nothing to guard (this sglang has no aiter norm entry)", not explicit_on
    if route:
        return f"protected: {', '.join(exposed)}", True
    return (
        "NOT protected: sglang's processes will not load the guard; set AITER_NORM_GUARD=1 for the server "
        "(or run it with `aiter-norm-guard run -- ...`), with this package installed from its wheel",
        False,
    )


def diagnose() -> dict[str, Any]:
    """Everything ``doctor`` reports, and its verdict."""
    raw = settings.read(settings.ENABLE_VAR)
    flag = settings.parse_flag(
        settings.ENABLE_VAR, raw, True, "unset: on wherever aiter_norm_guard is imported or loaded as a plugin"
    )
    sg = sglang_info()
    root = _spec_dir("sglang") if sg["installed"] else None
    targets = [inspect_target(root, t) for t in TARGETS] if root is not None else []
    if sg["installed"] and root is None:
        targets = [{"name": "sglang", "error": "sglang is installed but its package directory cannot be found"}]
    plugin = _plugin()
    children = startup.children_inherit(raw, use_current=False)
    plugin_route = plugin["allowed"] and version_tuple(sg["version"]) >= (0, 5, 11)
    verdict, ok = _verdict(flag, sg, targets, bool(children["inherit"] or plugin_route), settings.is_on(raw))
    return {
        "verdict": verdict,
        "ok": ok,
        "guard": {"enabled": flag.value, "reason": flag.reason, "row_strided": settings.row_strided().value},
        "sglang": sg,
        "targets": targets,
        "aiter": aiter_routing(),
        "torch": _torch(),
        "children": {**children, "sglang_plugin": plugin, "plugin_route": plugin_route},
    }


def _target_line(t: dict[str, Any]) -> str:
    if "error" in t:
        return f"ERROR {t['error']}"
    if not t.get("present"):
        return "not in this sglang"
    if not t.get("aiter_branch"):
        return "present, no aiter branch (nothing to guard)"
    upstream = ", ".join(t["checks"]) or "none"
    return f"EXPOSED; upstream checks: {upstream}; the guard adds: {', '.join(t['guard_adds'])}"


def format_table(d: dict[str, Any]) -> str:
    """``diagnose()`` as aligned ``key  value`` lines."""
    sg, ch, tr = d["sglang"], d["children"], d["torch"]
    rows = [
        ("verdict", d["verdict"]),
        ("guard", f"{'enabled' if d['guard']['enabled'] else 'disabled'} ({d['guard']['reason']})"),
        ("row-strided zero-copy", "on" if d["guard"]["row_strided"] else "off"),
        ("sglang", f"{sg['version']} at {sg['location']}" if sg["installed"] else "not installed"),
    ]
    rows += [(t["name"], _target_line(t)) for t in d["targets"]]
    rows += [
        ("aiter", f"{d['aiter']['version'] or 'version unknown'}; {d['aiter']['routing']}"),
        ("torch", f"{tr.get('version')} hip={tr.get('hip')} cuda={tr.get('cuda')} device={tr.get('device')}"),
        ("children: start-up file", ch["startup_file"] or "not installed (install the wheel)"),
        ("children: AITER_NORM_GUARD", ch["env"] if ch["env"] is not None else "unset"),
        (
            "children: sglang plugin",
            ("visible" if ch["sglang_plugin"]["visible"] else "not visible")
            + (", allowed" if ch["sglang_plugin"]["allowed"] else ", not allowed")
            + f" (SGLANG_PLUGINS={ch['sglang_plugin']['SGLANG_PLUGINS']}; sglang >= 0.5.11 loads plugins)",
        ),
        ("children inherit", "yes" if ch["inherit"] or ch["plugin_route"] else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
