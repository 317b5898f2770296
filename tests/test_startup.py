"""The guard reaches every Python process: spawn and forkserver workers, subprocesses, the
env-var-only path, the launcher and sglang's own plugin loading.  Real processes, no mocks.

These need the start-up file installed (the package installed from the wheel, as
scripts/test.sh does); from a bare source checkout they skip.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import procs_helper
import pytest

import aiter_norm_guard
from aiter_norm_guard.bootstrap.startup import startup_file
from conftest import REPO, run_python, sglang_version

pytestmark = pytest.mark.skipif(startup_file() is None, reason="start-up file not installed (install the wheel)")
HELPER = str(Path(procs_helper.__file__).resolve())


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def helper_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env["PYTHONPATH"] = os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(REPO / "tests")])
    env.update(extra)
    return env


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_workers_get_the_guard_before_sglang(method: str, layernorm: Any) -> None:
    assert os.environ.get("AITER_NORM_GUARD") == "1"  # set by `import aiter_norm_guard` in this process
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=procs_helper.spawn_target, args=(queue,))
    proc.start()
    result = queue.get(timeout=300)
    proc.join(60)
    assert proc.exitcode == 0
    assert result["guard_loaded"] and not result["layernorm_loaded"]  # installed before sglang's layernorm
    assert result["sources"][0] == "env-bootstrap"
    assert result["outcomes"] == {"q": "ok", "k": "ok"} and result["children_inherit"] is True


def test_plain_subprocess_of_a_guarded_parent(layernorm: Any) -> None:
    proc = subprocess.run(
        [sys.executable, HELPER],
        capture_output=True,
        text=True,
        env={**helper_env(), "AITER_NORM_GUARD": os.environ["AITER_NORM_GUARD"]},
        timeout=300,
    )
    result = last_json(proc)
    assert result["sources"] == ["env-bootstrap"] and result["outcomes"] == {"q": "ok", "k": "ok"}


def test_env_var_alone_protects_a_process_that_never_imports_the_guard(layernorm: Any) -> None:
    proc = subprocess.run(
        [sys.executable, HELPER], capture_output=True, text=True, env=helper_env(AITER_NORM_GUARD="1"), timeout=300
    )
    result = last_json(proc)
    assert result["guard_loaded"] and result["sources"] == ["env-bootstrap"]
    assert result["outcomes"] == {"q": "ok", "k": "ok"}


def test_disabled_parent_disables_children(layernorm: Any) -> None:
    code = f"""
import json, multiprocessing, sys
sys.path.insert(0, {str(REPO / "tests")!r})
import aiter_norm_guard, procs_helper
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn"); q = ctx.Queue()
    p = ctx.Process(target=procs_helper.spawn_target, args=(q,)); p.start(); r = q.get(timeout=300); p.join()
    print(json.dumps({{"parent_installed": aiter_norm_guard.status()["installed"], "child": r}}))
"""
    result = last_json(run_python(code, env={"AITER_NORM_GUARD": "0"}))
    assert result["parent_installed"] is False
    assert result["child"]["guard_loaded"] is False and result["child"]["outcomes"] == {"q": "fault", "k": "fault"}


MODULES = "import sys, json; print(json.dumps(sorted(m for m in sys.modules if 'aiter' in m or m in ('torch', 'wrapt', 'sglang'))))"  # noqa: E501


def test_bootstrap_is_inert_when_off() -> None:
    for value in (None, "0", "off", " OFF "):
        env = helper_env() if value is None else helper_env(AITER_NORM_GUARD=value)
        proc = subprocess.run([sys.executable, "-c", MODULES], capture_output=True, text=True, env=env, timeout=60)
        assert last_json(proc) == [] and proc.stderr == "", value  # type: ignore[comparison-overlap]


@pytest.mark.parametrize("value", ["ture", "enable", "2"])
def test_a_misspelt_switch_warns_once_in_every_process_and_installs_nothing(value: str) -> None:
    env = helper_env(AITER_NORM_GUARD=value)
    proc = subprocess.run([sys.executable, "-c", MODULES], capture_output=True, text=True, env=env, timeout=60)
    assert last_json(proc) == ["_aiter_norm_guard_startup"]  # type: ignore[comparison-overlap]
    warnings = [line for line in proc.stderr.splitlines() if "AITER_NORM_GUARD" in line]
    assert len(warnings) == 1 and repr(value) in warnings[0] and "1/true/yes/on" in warnings[0]
    # the same process importing the guard later: still one warning, and the unset behaviour (on)
    code = "import aiter_norm_guard, json; print(json.dumps(aiter_norm_guard.status()['enabled']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert last_json(proc) is True  # type: ignore[comparison-overlap]
    assert sum("AITER_NORM_GUARD" in line for line in proc.stderr.splitlines()) == 1, proc.stderr


def test_uninstall_gives_children_back_the_switch_as_it_was(layernorm: Any) -> None:
    code = f"""
import json, os, subprocess, sys
import aiter_norm_guard
during = os.environ.get("AITER_NORM_GUARD")
aiter_norm_guard.uninstall()
after = os.environ.get("AITER_NORM_GUARD")
child = subprocess.run([sys.executable, {HELPER!r}], capture_output=True, text=True)
print(json.dumps({{"during": during, "after": after, "child": json.loads(child.stdout.strip().splitlines()[-1])}}))
"""
    result = last_json(run_python(code))
    assert result["during"] == "1" and result["after"] is None
    assert result["child"]["guard_loaded"] is False and result["child"]["outcomes"] == {"q": "fault", "k": "fault"}


def launcher() -> list[str]:
    exe = shutil.which("aiter-norm-guard", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "aiter_norm_guard"]


def test_launcher_runs_the_command_guarded_and_passes_exit_status_and_signals(layernorm: Any) -> None:
    proc = subprocess.run(
        [*launcher(), "run", "--", sys.executable, HELPER],
        capture_output=True,
        text=True,
        env=helper_env(),
        timeout=300,
    )
    assert last_json(proc)["sources"] == ["env-bootstrap"]
    code = subprocess.run(
        [*launcher(), "run", "--", sys.executable, "-c", "raise SystemExit(7)"], env=helper_env(), timeout=120
    ).returncode
    assert code == 7
    killed = subprocess.run(
        [*launcher(), "run", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
        env=helper_env(),
        timeout=120,
    )
    assert killed.returncode == -signal.SIGTERM
    missing = subprocess.run(
        [*launcher(), "run", "--", "no-such-command-xyz"], capture_output=True, text=True, env=helper_env(), timeout=120
    )
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    not_executable = subprocess.run(
        [*launcher(), "run", "--", str(REPO / "README.md")],
        capture_output=True,
        text=True,
        env=helper_env(),
        timeout=120,
    )
    assert not_executable.returncode == 126 and "cannot run" in not_executable.stderr  # as a shell says it


def test_launcher_and_doctor_say_nothing_about_sglang_before_an_unrelated_command() -> None:
    env = {**helper_env(), "PYTHONPATH": ""}
    proc = subprocess.run(
        [*launcher(), "run", "--", sys.executable, "-c", "print('hi')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "hi" and "sglang" not in proc.stderr


PLUGIN_CODE = """
import json, os, sys
switch = os.environ.get("AITER_NORM_GUARD")
os.environ["AITER_NORM_GUARD"] = "0"  # the emulation is part of the package: its import must not be the install
from aiter_norm_guard import _state
from aiter_norm_guard.emulation import EmulatedRocm
os.environ.pop("AITER_NORM_GUARD") if switch is None else os.environ.__setitem__("AITER_NORM_GUARD", switch)
_state.SOURCES.clear(); _state.LAST_FLAG.clear()
EmulatedRocm().activate()  # a ROCm host from the start, as on a real one (sglang caches is_hip())
from sglang.srt.plugins import load_plugins
load_plugins()
guard = sys.modules.get("aiter_norm_guard")
import sglang.srt.layers.layernorm as ln
registry = sys.modules.get("aiter_norm_guard.guard.registry")
patched = guard is not None and registry.guard_of(ln.RMSNorm.forward_aiter) is not None
print(json.dumps({"sources": guard.status()["sources"] if guard else [], "patched": patched}))
"""


@pytest.mark.parametrize(
    ("value", "allowed", "patched"), [(None, None, True), ("0", None, False), (None, "some_other_plugin", False)]
)
def test_sglang_plugin_entry_point_through_real_load_plugins(
    value: str | None, allowed: str | None, patched: bool
) -> None:
    release = REPO / ".envs" / "sglang-0.5.11"
    if not release.is_dir():
        pytest.skip("sglang 0.5.11 overlay not built")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env["PYTHONPATH"] = str(release)
    if value is not None:
        env["AITER_NORM_GUARD"] = value
    if allowed is not None:
        env["SGLANG_PLUGINS"] = allowed
    result = last_json(
        subprocess.run([sys.executable, "-c", PLUGIN_CODE], capture_output=True, text=True, env=env, timeout=300)
    )
    assert result["patched"] is patched
    if patched:
        assert result["sources"] == ["sglang-plugin"]


def test_status_reports_sources_and_inheritance() -> None:
    st = aiter_norm_guard.status()
    assert "import" in st["sources"]
    assert st["children"]["inherit"] is True and st["children"]["startup_file"] == startup_file()
    assert sglang_version() is None or st["sglang"]["version"] == sglang_version()


def test_launcher_warns_when_the_commands_python_lacks_the_guard(tmp_path: Path) -> None:
    """`run -- <another python>` (a pipx / uv-tool CLI, another venv first on PATH): that interpreter reads no
    start-up file, so AITER_NORM_GUARD=1 does nothing there. Said on stderr; the command still runs."""
    bare = str(REPO / ".venv" / "bin" / "python")  # the base venv: no wheel installed in it
    script = tmp_path / "tool"
    script.write_text(f"#!{bare}\nprint('ran')\n")
    script.chmod(0o755)
    env = {**helper_env(), "PYTHONPATH": ""}
    for cmd in ([bare, "-c", "print('ran')"], [str(script)]):
        proc = subprocess.run([*launcher(), "run", "--", *cmd], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "ran", proc.stderr
        assert f"warning: {bare}" in proc.stderr and "has no aiter_norm_guard start-up file" in proc.stderr
        assert "UNGUARDED" in proc.stderr
    for cmd in ([sys.executable, "-c", "print('ran')"], ["sh", "-c", "echo ran"]):  # the guard's Python; not Python
        proc = subprocess.run([*launcher(), "run", "--", *cmd], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "ran" and proc.stderr == "", proc.stderr
