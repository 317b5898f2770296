"""install / uninstall symmetry, idempotency, third-party wrappers, reload, late import, missing targets."""

from __future__ import annotations

import functools
import json
import logging
import sys
import types
from typing import Any

import pytest
import torch

import aiter_norm_guard
from aiter_norm_guard.guard.guard import guard_of, original_of
from aiter_norm_guard.install.patcher import Patcher
from aiter_norm_guard.targets import TARGETS as ALL_TARGETS
from aiter_norm_guard.targets import Feed, Group
from aiter_norm_guard.targets.layernorm import LAYERNORM, RMSNORM
from conftest import guarded_entries, make_norm, original_forward, run_python

TARGETS = {t.name: t for t in ALL_TARGETS}

Q = "torch.randn(64, 6144, dtype=torch.bfloat16)[:, :4096].view(64, 32, 128)"


#: Child code: ``outcome(m)``, whether norm ``m`` on ``q`` (Q) matches its forward_native ("ok") or faults ("fault").
OUTCOME = f"""q = {Q}
def outcome(m):
    try:
        torch.testing.assert_close(m(q), m.forward_native(q)); return "ok"
    except MemoryAccessFault:
        return "fault"
"""


def qview() -> torch.Tensor:
    return torch.randn(64, 6144, dtype=torch.bfloat16)[:, :4096].view(64, 32, 128)


def test_uninstall_puts_back_the_original_objects_and_install_wraps_once(layernorm: Any, guarded: None) -> None:
    entries = sorted(e for e in guarded_entries() if TARGETS[e].module == LAYERNORM)
    assert entries, "this release has an aiter entry"
    cls = {e: getattr(layernorm, e.split(".")[0]) for e in entries}
    originals = {e: original_of(cls[e].__dict__[e.split(".")[1]]) for e in entries}
    norm = make_norm(layernorm.RMSNorm, 128, torch.bfloat16)
    bound = norm._forward_method.__func__

    aiter_norm_guard.uninstall()
    for e in entries:
        assert cls[e].__dict__[e.split(".")[1]] is originals[e]
    assert guard_of(bound) is not None and norm._forward_method.__func__ is originals["RMSNorm.forward_aiter"]
    assert not any(t["patched"] for t in aiter_norm_guard.status()["targets"])

    aiter_norm_guard.install(force=True)
    for e in entries:
        fn = cls[e].__dict__[e.split(".")[1]]
        assert original_of(fn) is originals[e] and original_of(originals[e]) is None  # one layer, ours
    assert guard_of(norm._forward_method.__func__) is not None  # live instances bound to the guard again
    first = {e: cls[e].__dict__[e.split(".")[1]] for e in entries}
    aiter_norm_guard.install(force=True)
    assert {e: cls[e].__dict__[e.split(".")[1]] for e in entries} == first


def test_status_is_json_serializable_and_truthful(layernorm: Any, guarded: None) -> None:
    st = json.loads(json.dumps(aiter_norm_guard.status()))
    assert st["active"] and st["installed"] and st["sglang"]["installed"] and st["error"] is None
    rms = next(t for t in st["targets"] if t["name"] == "RMSNorm.forward_aiter")
    assert rms == {**rms, "present": True, "patched": True, "module_imported": True, "selected": True}
    quant = [t for t in st["targets"] if "quant" in t["name"]]
    assert all(not t["patched"] for t in quant)  # their modules are not imported here
    assert "import" in st["sources"]


def tracer(fn: Any) -> Any:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        traced.calls += 1  # type: ignore[attr-defined]
        return fn(*args, **kwargs)

    traced.calls = 0  # type: ignore[attr-defined]
    return traced


def test_a_third_party_wrapper_over_the_guard_survives_uninstall(rmsnorm: Any, kernels: Any, guarded: None) -> None:
    """functools.wraps copies the guard's attributes: identity, not attributes, says what is ours."""
    from aiter_norm_guard.emulation import MemoryAccessFault

    ours = rmsnorm.__dict__["forward_aiter"]
    rmsnorm.forward_aiter = traced = tracer(ours)
    try:
        built = make_norm(rmsnorm, 128, torch.bfloat16)  # binds the tracer
        early = make_norm(rmsnorm, 128, torch.bfloat16)
        early._forward_method = types.MethodType(ours, early)  # bound to the guard itself
        st = aiter_norm_guard.uninstall()
        assert rmsnorm.__dict__["forward_aiter"] is traced  # the tracer stays
        rms = next(t for t in st["targets"] if t["name"] == "RMSNorm.forward_aiter")
        assert rms["patched"] is False and not st["active"]
        assert early._forward_method.__func__ is original_of(ours)  # the guard's instances get the original
        with pytest.raises(MemoryAccessFault):  # uninstalled means sglang's own behaviour, through the tracer
            built(qview())
        assert traced.calls == 1
        st = aiter_norm_guard.install(force=True)
        rms = next(t for t in st["targets"] if t["name"] == "RMSNorm.forward_aiter")
        assert rms["patched"] and rms["beneath"] is not None and "traced" in rms["beneath"]
        assert rmsnorm.__dict__["forward_aiter"] is traced and traced.__wrapped__ is ours  # no second guard
        q = qview()
        torch.testing.assert_close(built(q), built.forward_native(q))
    finally:
        rmsnorm.forward_aiter = ours


def test_reload_of_layernorm_is_guarded_again_and_status_tells_the_truth(layernorm: Any) -> None:
    code = """
import importlib, json, torch
from aiter_norm_guard.emulation import EmulatedRocm, MemoryAccessFault
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
old = ln.RMSNorm
importlib.reload(ln)
assert ln.RMSNorm is not old
m = ln.RMSNorm(128).to(torch.bfloat16)
q = Q
st = aiter_norm_guard.status()
print(json.dumps({"same": bool(torch.equal(m(q), m.forward_native(q))),
                  "patched": [t["name"] for t in st["targets"] if t["patched"]]}))
""".replace("Q", Q)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same"] and "RMSNorm.forward_aiter" in result["patched"]


def test_late_install_protects_modules_built_before_the_guard(layernorm: Any) -> None:
    code = (
        """
import json, sys, torch
from aiter_norm_guard.emulation import EmulatedRocm, MemoryAccessFault  # imports the package (switched off here)
EmulatedRocm().activate()
import sglang.srt.layers.layernorm as ln
early = ln.RMSNorm(128).to(torch.bfloat16)
"""
        + OUTCOME
        + """before = outcome(early)
import aiter_norm_guard
aiter_norm_guard.install(force=True)  # the switch is off in this process: an explicit, late install
rms = [t for t in aiter_norm_guard.status()["targets"] if t["name"] == "RMSNorm.forward_aiter"][0]
print(json.dumps({"before": before, "after": outcome(early), "new": outcome(ln.RMSNorm(128).to(torch.bfloat16)),
                  "rebound": rms["instances_rebound"]}))
"""
    )
    proc = run_python(code, env={"AITER_NORM_GUARD": "0"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "before": "fault",
        "after": "ok",
        "new": "ok",
        "rebound": 1,
    }


ENV_CODE = """
import json, logging
logging.basicConfig(level=logging.WARNING)
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
st = aiter_norm_guard.status()
print(json.dumps({"patched": st["targets"][0]["patched"], "enabled": st["enabled"], "reason": st["reason"]}))
"""


@pytest.mark.parametrize(
    ("value", "patched", "warns"),
    [("0", False, False), ("OFF", False, False), ("1", True, False), ("Yes", True, False), ("banana", True, True)],
)
def test_env_switch(value: str, patched: bool, warns: bool, rmsnorm: Any) -> None:
    proc = run_python(ENV_CODE, env={"AITER_NORM_GUARD": value})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["patched"] is patched and result["enabled"] is patched
    warned = [line for line in proc.stderr.splitlines() if "accepted values are" in line]
    assert len(warned) == (1 if warns else 0)
    if warns:
        assert "1/true/yes/on" in warned[0] and "0/false/no/off" in warned[0]


rms_norm: Any = None  # stands for the aiter binding an entry calls


class _Norm:
    def forward_aiter(self, x: Any, residual: Any = None) -> Any:
        return rms_norm(x)


def test_missing_and_unbuildable_targets_raise_nothing_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    mod = types.ModuleType("fake_sglang_layernorm")
    mod.RMSNorm = _Norm  # type: ignore[attr-defined]
    mod._use_aiter = True  # type: ignore[attr-defined]
    mod.rms_norm = None  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    try:
        renamed = RMSNORM._replace(name="renamed", module=mod.__name__, attribute="RMSNorm.forward_aiter_v2")
        unbuildable = RMSNORM._replace(
            name="unbuildable", module=mod.__name__, feed=Feed(groups=(Group("hidden"),)), aiter_calls=()
        )
        patcher = Patcher((renamed, unbuildable._replace(aiter_calls=("rms_norm",))))
        with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
            patcher.install()
            patcher.install()
        states = {s["name"]: s for s in patcher.report()}
        assert states["renamed"]["present"] is False and states["renamed"]["patched"] is False
        assert states["unbuildable"]["present"] is True and states["unbuildable"]["patched"] is False
        assert "has no parameter 'hidden'" in states["unbuildable"]["error"]
        assert _Norm.__dict__["forward_aiter"] is not None and guard_of(_Norm.forward_aiter) is None
        assert sum("could not patch unbuildable" in r.getMessage() for r in caplog.records) == 1
    finally:
        del sys.modules[mod.__name__]


NO_WRAPT = (
    """
import importlib, json, sys, torch
sys.modules["wrapt"] = None  # wrapt made unimportable
from aiter_norm_guard.emulation import EmulatedRocm, MemoryAccessFault  # imports the package (switched off here)
EmulatedRocm().activate()
import aiter_norm_guard
"""
    + OUTCOME
    + """def seen(st):
    rms = [t for t in st["targets"] if t["name"] == "RMSNorm.forward_aiter"][0]
    return {"error": st["error"], "patched": rms["patched"], "hooks": st["hooks"]["mechanism"]}
out = {"install": seen(aiter_norm_guard.install(force=True))}  # sglang's layernorm not imported yet
import sglang.srt.layers.layernorm as ln
out["import"] = {**seen(aiter_norm_guard.status()), "call": outcome(ln.RMSNorm(128).to(torch.bfloat16))}
out["again"] = {**seen(aiter_norm_guard.install(force=True)), "call": outcome(ln.RMSNorm(128).to(torch.bfloat16))}
importlib.reload(ln)
out["reload"] = {**seen(aiter_norm_guard.status()), "call": outcome(ln.RMSNorm(128).to(torch.bfloat16))}
print(json.dumps(out))
"""
)


def test_without_wrapt_status_says_exactly_what_is_guarded(rmsnorm: Any) -> None:
    """No wrapt, no import hook: install() patches what is imported when it runs, nothing later, and
    status() says so (it used to say "stay unguarded" while a second hook patched them anyway)."""
    proc = run_python(NO_WRAPT, env={"AITER_NORM_GUARD": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(v["hooks"] is None and v["error"].startswith("wrapt is not importable (") for v in out.values())
    assert "only the sglang modules already imported when it runs (at the last call: none)" in out["install"]["error"]
    assert "a module imported or reloaded after that stays unguarded" in out["install"]["error"]
    assert out["import"] == {**out["install"], "patched": False, "call": "fault"}  # imported later: unguarded
    assert out["again"]["patched"] and out["again"]["call"] == "ok"  # imported when install() runs: patched
    assert f"at the last call: {LAYERNORM}" in out["again"]["error"]
    assert out["reload"] == {**out["again"], "patched": False, "call": "fault"}  # reloaded later: unguarded


def test_entries_without_their_aiter_branch_are_left_alone(layernorm: Any, guarded: None) -> None:
    """A present entry whose source never reaches aiter (0.5.16+ Gemma: sglang's own Triton or
    native) is not patched: the guard would only change the release's behaviour there."""
    for t in aiter_norm_guard.status()["targets"]:
        if t["present"] and t["module_imported"]:
            assert t["patched"] == bool(t["aiter_branch"] and t["selected"]), t


def test_reinstall_after_uninstall_wraps_the_same_original(rmsnorm: Any, guarded: None) -> None:
    fn = rmsnorm.__dict__["forward_aiter"]
    aiter_norm_guard.uninstall()
    aiter_norm_guard.install(force=True)
    again = rmsnorm.__dict__["forward_aiter"]
    assert original_of(again) is original_of(fn) is original_forward(rmsnorm)


NARROWER = """
import functools, json, torch
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import sglang.srt.layers.layernorm as ln
orig = ln.RMSNorm.forward_aiter
@functools.wraps(orig)
def forward_aiter(self, x, residual=None):  # a third party's narrower wrapper, before the guard
    return orig(self, x, residual)
ln.RMSNorm.forward_aiter = forward_aiter
import aiter_norm_guard
m = ln.RMSNorm(128).to(torch.bfloat16)
q = Q
print(json.dumps({"safe": bool(torch.equal(m.forward_aiter(q[:, 0]), m.forward_native(q[:, 0]))),
                  "view": bool(torch.equal(m(q), m.forward_native(q)))}))
""".replace("Q", Q)


def test_a_narrower_wrapper_installed_before_the_guard_keeps_working(rmsnorm: Any) -> None:
    proc = run_python(NARROWER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"safe": True, "view": True}


def test_a_wrapt_wrapper_over_the_guard_survives_uninstall(rmsnorm: Any, kernels: Any, guarded: None) -> None:
    """wrapt proxies hash and compare equal to what they wrap: the registry must not take theirs for ours."""
    import wrapt

    ours = rmsnorm.__dict__["forward_aiter"]
    calls: list[int] = []

    def tracer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        calls.append(1)
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(rmsnorm, "forward_aiter", tracer)
    try:
        proxy = rmsnorm.__dict__["forward_aiter"]
        assert guard_of(proxy) is None and guard_of(ours) is not None
        aiter_norm_guard.uninstall()
        assert rmsnorm.__dict__["forward_aiter"] is proxy  # theirs stays
        norm = make_norm(rmsnorm, 128, torch.bfloat16)
        x = torch.randn(4, 128, dtype=torch.bfloat16)
        norm.forward_aiter(x)
        assert calls == [1]
        rms = next(t for t in aiter_norm_guard.install(force=True)["targets"] if t["name"] == "RMSNorm.forward_aiter")
        assert rms["patched"] and rms["beneath"] is not None
    finally:
        rmsnorm.forward_aiter = ours


def test_a_plain_replacement_over_the_guard_is_reported_and_the_guard_comes_back_on(
    rmsnorm: Any, kernels: Any, guarded: None
) -> None:
    ours = rmsnorm.__dict__["forward_aiter"]
    rmsnorm.forward_aiter = lambda self, *a, **k: ours(self, *a, **k)  # no __wrapped__: opaque to the guard
    try:
        rms = next(t for t in aiter_norm_guard.status()["targets"] if t["name"] == "RMSNorm.forward_aiter")
        assert rms["patched"] is False and "lambda" in rms["replaced_by"]
        aiter_norm_guard.uninstall()
        aiter_norm_guard.install(force=True)
        norm = make_norm(rmsnorm, 128, torch.bfloat16)
        q = qview()
        torch.testing.assert_close(norm.forward_aiter(q), norm.forward_native(q))  # the guard beneath is on again
    finally:
        rmsnorm.forward_aiter = ours


def test_install_uninstall_cycles_build_one_guard_per_target(rmsnorm: Any, guarded: None) -> None:
    from aiter_norm_guard import _state
    from aiter_norm_guard.install.patcher import PATCHER

    before = (len(_state.GUARDS), len(PATCHER._records))
    fn = rmsnorm.__dict__["forward_aiter"]
    for _ in range(50):
        aiter_norm_guard.uninstall()
        aiter_norm_guard.install(force=True)
    assert (len(_state.GUARDS), len(PATCHER._records)) == before
    assert rmsnorm.__dict__["forward_aiter"] is fn


def test_row_strided_setting_reaches_guards_already_built(
    rmsnorm: Any, guarded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AITER_NORM_GUARD_ROW_STRIDED", "1")
    assert aiter_norm_guard.install(force=True)["row_strided"] is True
    assert guard_of(rmsnorm.__dict__["forward_aiter"]).allow_row_stride is True
    monkeypatch.delenv("AITER_NORM_GUARD_ROW_STRIDED")
    assert aiter_norm_guard.install(force=True)["row_strided"] is False
    assert guard_of(rmsnorm.__dict__["forward_aiter"]).allow_row_stride is False


RELOAD_CYCLE = """
import importlib, json, torch
from aiter_norm_guard.emulation import EmulatedRocm, MemoryAccessFault
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
early = ln.RMSNorm(128).to(torch.bfloat16)
importlib.reload(ln)
aiter_norm_guard.uninstall()
aiter_norm_guard.install()
q = Q
print(json.dumps({"early": bool(torch.equal(early(q), early.forward_native(q)))}))
""".replace("Q", Q)


def test_modules_built_before_a_reload_are_guarded_again_after_uninstall_install(rmsnorm: Any) -> None:
    proc = run_python(RELOAD_CYCLE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"early": True}


def test_install_after_uninstall_wraps_what_someone_wrapped_the_original_with(
    rmsnorm: Any, kernels: Any, guarded: None
) -> None:
    """uninstall, a third party wraps the original, install: guarded again (it used to stay off, silently)."""
    ours = rmsnorm.__dict__["forward_aiter"]
    aiter_norm_guard.uninstall()
    original = rmsnorm.__dict__["forward_aiter"]

    @functools.wraps(original)
    def theirs(self: Any, *a: Any, **k: Any) -> Any:
        return original(self, *a, **k)

    rmsnorm.forward_aiter = theirs
    try:
        st = aiter_norm_guard.install(force=True)
        rms = next(t for t in st["targets"] if t["name"] == "RMSNorm.forward_aiter")
        assert st["installed"] and st["error"] is None and rms["patched"] and rms["error"] is None
        assert original_of(rmsnorm.__dict__["forward_aiter"]) is theirs  # the guard over theirs, theirs kept
        norm = make_norm(rmsnorm, 128, torch.bfloat16)
        q = qview()
        torch.testing.assert_close(norm.forward_aiter(q), norm.forward_native(q))
    finally:
        rmsnorm.forward_aiter = ours
        aiter_norm_guard.install(force=True)


FRESH_IMPORT = """
import json, sys, torch
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as first
old = sys.modules.pop("sglang.srt.layers.layernorm")
import sglang.srt.layers.layernorm as ln
rms = [t for t in aiter_norm_guard.status()["targets"] if t["name"] == "RMSNorm.forward_aiter"][0]
norm = ln.RMSNorm(128).to(torch.bfloat16)
q = Q
print(json.dumps({"new module": ln is not old, "patched": rms["patched"],
                  "guarded": bool(torch.equal(norm(q), norm.forward_native(q)))}))
""".replace("Q", Q)


def test_a_watched_module_imported_afresh_is_guarded_again(rmsnorm: Any) -> None:
    """Popped from sys.modules and imported again: wrapt's hook fired on the first import and filed itself again."""
    proc = run_python(FRESH_IMPORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"new module": True, "patched": True, "guarded": True}
