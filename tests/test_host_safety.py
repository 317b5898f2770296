"""Never breaking the host: aliasing inputs, internal failures, unreadable environment, hook failures."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import types
from typing import Any

import pytest
import torch

from aiter_norm_guard import _state
from aiter_norm_guard.emulation import AiterKernelDouble, MemoryAccessFault
from aiter_norm_guard.guard import guard as guard_module
from aiter_norm_guard.install import hooks
from conftest import make_norm, original_forward, run_python

DT = torch.bfloat16


def snapshot(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [t.clone() for t in ts]


def aliasing_cases() -> dict[str, tuple[torch.Tensor, ...]]:
    buf = torch.randn(16, 2 * 128, dtype=DT)
    x = torch.randn(4, 8, 128, dtype=DT)
    return {
        "residual_is_x": (x, x),
        "shared_storage": (buf[:, :128].view(16, 1, 128), buf[:, 128:].view(16, 1, 128)),
        "overlapping_views": (buf[:, :128], buf[:, 64:192]),
        "expanded_residual": (x, torch.randn(1, 8, 128, dtype=DT).expand(4, 8, 128)),
        "expanded_x_and_post": (
            torch.randn(1, 1, 128, dtype=DT).expand(4, 8, 128),
            x,
            torch.randn(1, 8, 128, dtype=DT).expand(4, 8, 128),
        ),
    }


@pytest.mark.parametrize("name", list(aliasing_cases()))
def test_callers_tensors_hold_what_the_original_leaves(
    name: str, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    args = aliasing_cases()[name]
    norm = make_norm(rmsnorm, 128, DT)
    before = snapshot(*args)
    got = norm(*args)
    # the original, called with contiguous 2-D copies, leaves its inputs as they were
    copies = [a.contiguous().view(-1, 128) for a in args]
    copies_before = snapshot(*copies)
    want = original_forward(rmsnorm)(norm, *copies)
    for c, b in zip(copies, copies_before, strict=True):
        assert torch.equal(c, b)
    for a, b in zip(args, before, strict=True):  # ... and so does the guard, bit for bit
        assert torch.equal(a, b)
    assert torch.equal(got[0].reshape(-1, 128), want[0]) and torch.equal(got[1].reshape(-1, 128), want[1])


@pytest.mark.parametrize("bad", [None, "x", 3, [1.0, 2.0]])
def test_non_tensor_argument_gets_the_original_behaviour(
    bad: Any, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    norm = make_norm(rmsnorm, 128, DT)
    with pytest.raises(Exception) as original_exc:
        original_forward(rmsnorm)(norm, bad)
    with pytest.raises(type(original_exc.value)):
        norm(bad)
    if bad is None:
        return  # residual=None is the ordinary call
    r = torch.randn(4, 128, dtype=DT)
    with pytest.raises(Exception) as original_res:
        original_forward(rmsnorm)(norm, r, bad)
    with pytest.raises(type(original_res.value)):
        norm(r, bad)


def test_own_failures_take_the_fallback_never_the_kernel_and_log_once_per_distinct_failure(
    rmsnorm: Any,
    kernels: AiterKernelDouble,
    guarded: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure of the guard's own code on a call its fast path did not pass takes the entry's fallback
    (forward_native): the unchecked call never reaches the kernel (here it would fault)."""
    from aiter_norm_guard import _state
    from aiter_norm_guard.guard.interventions import snapshot

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("layout logic exploded")

    def also_broken(*a: Any, **k: Any) -> Any:
        raise KeyError("another failure")

    monkeypatch.setattr(_state, "LOGGED", set())
    monkeypatch.setattr(guard_module.layout, "plan", broken)
    norm = make_norm(rmsnorm, 128, DT)
    q = torch.randn(64, 6144, dtype=DT)[:, :4096].view(64, 32, 128)
    res = torch.randn(64, 32, 128, dtype=DT)  # with a residual: the slow path (no inline layout fix there)
    with pytest.raises(MemoryAccessFault):
        original_forward(rmsnorm)(norm, q, res)  # what the unchecked call does

    def guard_errors() -> int:
        key = ("RMSNorm.forward_aiter", "guard error")
        return sum(c["count"] for c in snapshot() if (c["entry"], c["reason"]) == key)

    before = guard_errors()
    with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
        for _ in range(3):
            kernels.reset()
            for got, want in zip(norm(q, res), norm.forward_native(q, res), strict=True):
                torch.testing.assert_close(got, want)
            assert kernels.calls == []
        monkeypatch.setattr(guard_module.layout, "refusal", also_broken)
        norm(q, res)
        assert kernels.calls == []
    failures = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert len(failures) == 2 and "RuntimeError" in failures[0] and "KeyError" in failures[1]
    assert "fallback" in failures[0]
    assert guard_errors() == before + 4
    safe = torch.randn(4, 128, dtype=DT)
    torch.testing.assert_close(norm(safe), norm.forward_native(safe))  # the safe path is unaffected


def test_a_failing_hook_does_not_fail_the_import(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    (tmp_path / "victim_module_for_hooks.py").write_text("VALUE = 42\n")
    sys.path.insert(0, str(tmp_path))

    def boom(module: types.ModuleType) -> None:
        raise RuntimeError("hook exploded")

    try:
        hooks.when_imported("victim_module_for_hooks", boom)
        with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
            import victim_module_for_hooks  # type: ignore[import-not-found]
        assert victim_module_for_hooks.VALUE == 42
        assert any("post-import hook for victim_module_for_hooks failed" in r.getMessage() for r in caplog.records)
        # the failing hook re-armed itself: a reload and a fresh import fire it again, and neither fails
        (tmp_path / "victim_module_for_hooks.py").write_text("VALUE = 4300\n")  # another size: no stale .pyc
        assert importlib.reload(victim_module_for_hooks).VALUE == 4300
        sys.modules.pop("victim_module_for_hooks")
        assert importlib.import_module("victim_module_for_hooks").VALUE == 4300
        fails = [r for r in caplog.records if "post-import hook for victim_module_for_hooks failed" in r.getMessage()]
        assert len(fails) == 1  # logged once, not once per execution
        assert hooks.state()["armed"].count("victim_module_for_hooks") == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("victim_module_for_hooks", None)


HOOK_FIRES = """
import importlib, json, sys
sys.path.insert(0, DIR)
from wrapt import importer
from aiter_norm_guard import _state
from aiter_norm_guard.install import hooks
seen = []
import victim_early  # imported before its hook: the hook runs at once, then after each execution
hooks.when_imported("victim_early", lambda m: seen.append(("early", id(m))))
hooks.when_imported("victim_late", lambda m: seen.append(("late", id(m))))
import victim_late
importlib.reload(victim_early); importlib.reload(victim_late)
sys.modules.pop("victim_early"); sys.modules.pop("victim_late")
import victim_early, victim_late
print(json.dumps({"early": sum(s[0] == "early" for s in seen), "late": sum(s[0] == "late" for s in seen),
                  "filed": {n: len(importer._post_import_hooks.get(n, ())) for n in ("victim_early", "victim_late")},
                  "state": hooks.state(), "meta_path": [type(f).__name__ for f in sys.meta_path]}))
"""


def test_one_hook_mechanism_fires_on_import_reload_and_fresh_import(tmp_path: Any) -> None:
    """wrapt's hooks fire once by themselves; ours re-arm through wrapt's registry, and nothing else hooks."""
    for name in ("victim_early", "victim_late"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    proc = run_python(HOOK_FIRES.replace("DIR", repr(str(tmp_path))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["early"] == 3 and result["late"] == 3  # (now or import), reload, fresh import
    assert result["filed"] == {"victim_early": 1, "victim_late": 1}  # armed again, once each
    every = hooks.EVERY_EXECUTION
    assert {n: result["state"]["watched"][n] for n in ("victim_early", "victim_late")} == dict.fromkeys(
        ("victim_early", "victim_late"), every
    )
    assert set(result["state"]["watched"].values()) == {every}  # the guard's own modules (importing it installs)
    assert result["state"]["mechanism"].startswith("wrapt ") and "armed" in result["state"]
    assert result["meta_path"].count("ImportHookFinder") == 1 and "ReloadFinder" not in result["meta_path"]


def test_a_wrapt_without_its_registry_fires_on_the_first_import_only(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-arming reads wrapt's private registry; a wrapt without it degrades to wrapt's own once, and says so."""
    from wrapt import importer

    monkeypatch.setattr(hooks, "_registry", lambda importer: None)  # as a wrapt that renamed it would read
    (tmp_path / "victim_no_registry.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    seen: list[int] = []
    try:
        hooks.when_imported("victim_no_registry", lambda m: seen.append(id(m)))
        import victim_no_registry  # type: ignore[import-not-found]

        importlib.reload(victim_no_registry)
        assert len(seen) == 1
        assert _state.WATCHED["victim_no_registry"] == hooks.FIRST_IMPORT
        assert hooks.fires_on(importer) == hooks.FIRST_IMPORT
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("victim_no_registry", None)
        _state.WATCHED.pop("victim_no_registry", None)
