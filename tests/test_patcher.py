"""install / uninstall symmetry, idempotency, late import, missing targets."""

from __future__ import annotations

import json
import logging
import sys
import types
from typing import Any

import pytest
import torch

import aiter_norm_guard
from aiter_norm_guard.guard import WRAPPED_ATTR
from aiter_norm_guard.patcher import Patcher
from aiter_norm_guard.targets import Target
from conftest import make_norm, original_forward, run_python


def test_uninstall_puts_back_the_original_object_and_install_wraps_once(rmsnorm: Any, guarded: None) -> None:
    original = original_forward(rmsnorm)
    norm = make_norm(rmsnorm, 128, torch.bfloat16)
    assert norm._forward_method.__func__ is rmsnorm.__dict__["forward_aiter"]

    aiter_norm_guard.uninstall()
    assert rmsnorm.__dict__["forward_aiter"] is original
    assert norm._forward_method.__func__ is original  # live instances unbound too
    assert not any(t["patched"] for t in aiter_norm_guard.status()["targets"])

    aiter_norm_guard.install(force=True)
    wrapper = rmsnorm.__dict__["forward_aiter"]
    assert getattr(wrapper, WRAPPED_ATTR) is original
    assert norm._forward_method.__func__ is wrapper
    aiter_norm_guard.install(force=True)
    assert rmsnorm.__dict__["forward_aiter"] is wrapper  # installing twice wraps once
    assert getattr(getattr(wrapper, WRAPPED_ATTR), WRAPPED_ATTR, None) is None


def test_status_is_json_serializable(rmsnorm: Any, guarded: None) -> None:
    st = json.loads(json.dumps(aiter_norm_guard.status()))
    assert st["active"] and st["installed"] and st["sglang"]["installed"]
    (target,) = st["targets"]
    assert target == {**target, "found": True, "patched": True, "module_imported": True}
    assert "import" in st["sources"]


def broken_factory(original: Any, allow_row_stride: bool = False) -> Any:
    raise RuntimeError("factory exploded")


def test_missing_and_broken_targets_warn_once_and_raise_nothing(caplog: pytest.LogCaptureFixture) -> None:
    mod = types.ModuleType("fake_sglang_layernorm")

    class RMSNorm:
        def forward_aiter(self, x: Any, residual: Any = None) -> Any:
            return x

    mod.RMSNorm = RMSNorm  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod

    try:
        targets = (
            Target(
                "renamed",
                mod.__name__,
                "RMSNorm.forward_aiter_v2",
                "aiter_norm_guard.guard:make_guarded_forward",
                (),
                "-",
            ),
            Target("broken", mod.__name__, "RMSNorm.forward_aiter", f"{__name__}:broken_factory", (), "-"),
        )
        patcher = Patcher(targets)
        with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
            patcher.install()
            patcher.install()
        states = {s["name"]: s for s in patcher.report()}
        assert states["renamed"]["found"] is False and "not found" in states["renamed"]["error"]
        assert states["broken"]["found"] is True and states["broken"]["patched"] is False
        assert "factory exploded" in states["broken"]["error"]
        assert RMSNorm.__dict__["forward_aiter"] is not None and not hasattr(RMSNorm.forward_aiter, WRAPPED_ATTR)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("forward_aiter_v2 not found" in m for m in messages) == 1
        assert sum("could not patch broken" in m for m in messages) == 1
    finally:
        del sys.modules[mod.__name__]


EMULATED_IMPORT = """
import json, torch
from aiter_norm_guard_emulation import EmulatedRocm, MemoryAccessFault
EmulatedRocm().activate()
"""

CHECK_Q = """
q = torch.randn(2048, 6144, dtype=torch.bfloat16)[:, :4096].view(2048, 32, 128)
def outcome(m):
    try:
        torch.testing.assert_close(m(q), m.forward_native(q)); return "ok"
    except MemoryAccessFault:
        return "fault"
"""


def test_late_import_protects_modules_built_before_the_guard(layernorm: Any) -> None:
    code = (
        EMULATED_IMPORT
        + """
import sys
assert "aiter_norm_guard" not in sys.modules
import sglang.srt.layers.layernorm as ln
early = ln.RMSNorm(128).to(torch.bfloat16)
"""
        + CHECK_Q
        + """
before = outcome(early)
import aiter_norm_guard
print(json.dumps({"before": before, "after": outcome(early), "new": outcome(ln.RMSNorm(128).to(torch.bfloat16)),
                  "rebound": aiter_norm_guard.status()["targets"][0]["instances_rebound"]}))
"""
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"before": "fault", "after": "ok", "new": "ok", "rebound": 1}


@pytest.mark.parametrize(
    ("value", "patched", "warns"),
    [("0", False, False), ("OFF", False, False), ("1", True, False), ("Yes", True, False), ("banana", True, True)],
)
def test_env_switch(value: str, patched: bool, warns: bool, layernorm: Any) -> None:
    code = (
        EMULATED_IMPORT
        + """
import logging; logging.basicConfig(level=logging.WARNING)
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
st = aiter_norm_guard.status()
print(json.dumps({"patched": st["targets"][0]["patched"], "enabled": st["enabled"], "reason": st["reason"]}))
"""
    )
    proc = run_python(code, env={"AITER_NORM_GUARD": value})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["patched"] is patched and result["enabled"] is patched
    warned = [line for line in proc.stderr.splitlines() if "accepted values are" in line]
    assert len(warned) == (1 if warns else 0)
    if warns:
        assert "1/true/yes/on" in warned[0] and "0/false/no/off" in warned[0]


def test_sglang_absent_is_quiet_and_harmless() -> None:
    code = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG)
sys.modules["sglang"] = None  # make sglang unimportable even if it is installed
import aiter_norm_guard
aiter_norm_guard.install()  # explicit again: still one warning
st = aiter_norm_guard.status()
print(json.dumps({"installed": st["installed"], "imported": st["targets"][0]["module_imported"],
                  "patched": st["targets"][0]["patched"]}))
"""
    proc = run_python(code, env={"PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"installed": True, "imported": False, "patched": False}
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and "sglang is not installed" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
