"""Shared fixtures: sglang's real norm modules behind an emulated ROCm + aiter host.

The sglang release comes from the environment (``PYTHONPATH=.envs/sglang-X``); tests that
need it skip with a clear reason when it is absent.  The guard is imported first, as an
operator would, so it is installed when sglang's layernorm module is imported.  The kernel
double models aiter <= v0.1.17 (every rank to the HIP/CK kernels) unless a test selects
the other build.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import aiter_norm_guard
from aiter_norm_guard.cli.cases import make_module
from aiter_norm_guard.emulation import AiterKernelDouble, EmulatedRocm
from aiter_norm_guard.guard.guard import original_of
from aiter_norm_guard.install.locate import source_node, upstream
from aiter_norm_guard.targets import TARGETS

REPO = Path(__file__).resolve().parent.parent


def sglang_version() -> str | None:
    try:
        return importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return None


def version_tuple(v: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in (v or "0").split(".")[:3] if p.isdigit())


@pytest.fixture(scope="session")
def rocm() -> Iterator[EmulatedRocm]:
    emu = EmulatedRocm(AiterKernelDouble())
    emu.activate()
    yield emu
    emu.deactivate()


@pytest.fixture(scope="session")
def layernorm(rocm: EmulatedRocm) -> Any:
    if sglang_version() is None:
        pytest.skip("sglang is not installed here (run with PYTHONPATH=.envs/sglang-X)")
    import sglang.srt.layers.layernorm as ln

    if hasattr(ln, "_use_aiter"):  # 0.4.6 predates the aiter path
        assert ln._use_aiter, "sglang did not select its aiter path under the emulated ROCm host"
    return ln


@pytest.fixture(scope="session")
def rmsnorm(layernorm: Any) -> Any:
    if not hasattr(layernorm.RMSNorm, "forward_aiter"):
        pytest.skip(f"n/a: sglang {sglang_version()} has no RMSNorm.forward_aiter")
    return layernorm.RMSNorm


def guarded_entries() -> set[str]:
    return {t["name"] for t in aiter_norm_guard.status()["targets"] if t["patched"]}


def require_entry(entry: str) -> None:
    """Skip as n/a where this release has no aiter branch for ``entry`` (the guard patches none)."""
    aiter_norm_guard.install(force=True)
    if entry not in guarded_entries():
        pytest.skip(f"n/a: sglang {sglang_version()} has no aiter branch in {entry}")


@pytest.fixture
def kernels(rocm: EmulatedRocm) -> Iterator[AiterKernelDouble]:
    k = rocm.kernels
    k.reset()
    k.compute, k.record, k.build = True, True, "legacy"
    yield k
    k.compute, k.record, k.build = True, True, "legacy"
    k.reset()


@pytest.fixture
def guarded(layernorm: Any) -> Iterator[None]:
    """The guard installed for this test (and re-installed after, whatever the test did)."""
    aiter_norm_guard.install(force=True)
    yield
    aiter_norm_guard.install(force=True)


def entry_fn(layernorm: Any, entry: str) -> Any:
    cls, attr = entry.split(".")
    return getattr(getattr(layernorm, cls), attr)


def original_entry(layernorm: Any, entry: str) -> Any:
    """The release's own function behind ``entry`` (the unguarded one)."""
    fn = entry_fn(layernorm, entry)
    return original_of(fn) or fn


def upstream_checks(layernorm: Any, entry: str, with_rows: bool = False) -> frozenset[str]:
    """What this release's own entry does before its kernel (the upstream table, by its fingerprint)."""
    row = upstream(next(t for t in TARGETS if t.name == entry), source_node(original_entry(layernorm, entry)))
    return frozenset() if row is None else (row.with_rows if with_rows else row.alone)


def original_forward(rmsnorm: Any) -> Any:
    """The release's own ``RMSNorm.forward_aiter``."""
    return original_of(rmsnorm.forward_aiter) or rmsnorm.forward_aiter


def make_norm(
    layernorm_or_cls: Any,
    hidden: int,
    dtype: torch.dtype,
    weight_dtype: torch.dtype | None = None,
    entry: str = "RMSNorm.forward_aiter",
) -> Any:
    ln = sys.modules[layernorm_or_cls.__module__] if isinstance(layernorm_or_cls, type) else layernorm_or_cls
    return make_module(ln, entry, hidden, dtype, weight_dtype)


def run_python(code: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this test session's sys.path (sglang overlay included)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    full.update(env or {})
    paths = [full.get("PYTHONPATH", "")]
    pkg_parent = str(Path(aiter_norm_guard.__file__).resolve().parent.parent)
    if pkg_parent not in sys.path[1:] or "site-packages" not in pkg_parent:
        paths.append(pkg_parent)  # a source checkout: make the same package importable
    full["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=timeout)


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``'s result, or the type of the exception it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return type(exc)
