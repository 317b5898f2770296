"""What this host's torch and aiter are, read from their files: no import of torch or aiter.

``doctor`` must stay fast and must not run either package's import-time code (CUDA / HIP
initialisation, aiter's JIT), so torch's build comes from ``torch/version.py`` (parsed) and
aiter's presence from ``importlib.util.find_spec``.  A host whose torch is not a ROCm build and
that has no aiter takes no aiter path: sglang's aiter branches need both.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any


def _spec_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def torch_info() -> dict[str, Any]:
    """torch's version and build (``hip``: the ROCm version, None on a CUDA or CPU build), unimported."""
    root = _spec_dir("torch")
    out: dict[str, Any] = {"installed": root is not None, "version": None, "hip": None, "cuda": None}
    if root is None:
        return out
    path = root / "version.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        return {**out, "error": f"cannot read {path}: {type(exc).__name__}: {exc}"}
    values: dict[str, Any] = {}
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        )
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    version, hip, cuda = values.get("__version__"), values.get("hip"), values.get("cuda")
    return {**out, "version": version, "hip": hip, "cuda": cuda, "device": "not probed (doctor does not import torch)"}


def aiter_routing() -> dict[str, Any]:
    """The installed aiter: version, and which kernels its RMSNorm entry points route to."""
    version = None
    for dist in ("amd-aiter", "aiter"):
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:  # unreadable metadata: the version stays unknown
            break
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


def no_aiter_path(torch: dict[str, Any], aiter: dict[str, Any]) -> str | None:
    """Why this host takes no aiter path (torch is not a ROCm build and aiter is not installed), or None."""
    if aiter["importable"] or torch.get("hip") or torch.get("error"):
        return None
    build = "torch is not installed" if not torch["installed"] else "torch is not a ROCm build"
    return f"{build}, aiter not installed"
