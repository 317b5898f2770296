"""``doctor`` and ``selftest``: tables, --json schemas, exit codes, and the hard situations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiter_norm_guard.bootstrap.startup import startup_file
from aiter_norm_guard.cli import selftest_report
from aiter_norm_guard.targets import TARGETS
from conftest import REPO

wheel = pytest.mark.skipif(startup_file() is None, reason="start-up file not installed (install the wheel)")


def cli(
    *args: str, release: str | None = "0.5.10", as_rocm: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter.  ``doctor`` is judged ``--as-rocm`` unless told otherwise: this CPU host
    takes no aiter path, and the tests are about what a ROCm host with the release would need."""
    if as_rocm and args[:1] == ("doctor",):
        args = ("doctor", "--as-rocm", *args[1:])
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    full["PYTHONPATH"] = str(REPO / ".envs" / f"sglang-{release}") if release else ""
    full.update(env)
    if startup_file() is None:  # a source checkout: the package from the repository
        full["PYTHONPATH"] += os.pathsep + str(REPO)
    return subprocess.run(
        [sys.executable, "-P", "-W", "ignore", "-m", "aiter_norm_guard", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


DOCTOR_KEYS = {
    "verdict",
    "ok",
    "headline",
    "warnings",
    "host",
    "guard",
    "sglang",
    "targets",
    "ways",
    "call_sites",
    "links",
    "aiter",
    "torch",
    "children",
    "interventions",
}


def fake_ray(tmp: Path) -> str:
    """A directory that makes ``ray`` importable (found by find_spec, which is all doctor asks) when on PYTHONPATH."""
    (tmp / "ray_site" / "ray").mkdir(parents=True)
    (tmp / "ray_site" / "ray" / "__init__.py").write_text("")
    return str(tmp / "ray_site")


def overlay(release: str, *extra: str) -> str:
    return os.pathsep.join([str(REPO / ".envs" / f"sglang-{release}"), *extra])


def target(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in d["targets"] if t["name"] == name)


@wheel
def test_doctor_protected_by_env_and_start_up_file_lists_every_entry(tmp_path: Path) -> None:
    proc = cli("doctor", "--json", "--ways", "launch_server,Engine,bench_one_batch", AITER_NORM_GUARD="1")
    d = as_json(proc)
    assert proc.returncode == 0 and set(d) == DOCTOR_KEYS and d["verdict"].startswith("protected")
    assert d["sglang"]["version"] == "0.5.10"
    assert [t["name"] for t in d["targets"]] == [t.name for t in TARGETS]
    rms = target(d, "RMSNorm.forward_aiter")
    assert rms["present"] and rms["aiter_branch"] and rms["release_does"].startswith("0.5.10: no check")
    assert rms["parameters"] == ["x", "residual", "post_residual_addition"]
    assert {"x layout", "zero rows", "weight dtype", "weight length", "host tensors"} <= set(rms["guard_checks"])
    assert target(d, "GemmaRMSNorm.forward_hip")["aiter_branch"] is True
    assert target(d, "LayerNorm.forward_hip")["aiter_branch"] is False  # 0.5.10: native on HIP
    assert target(d, "communicator._fused_rmsnorm_fp8_per_token_quant")["present"] is False
    assert d["children"]["inherit"] is True and d["aiter"]["importable"] is False
    assert d["aiter"]["routing"].startswith("unknown") and d["torch"]["version"]
    assert {"launch_server", "Engine", "bench_one_batch"} <= {w["name"] for w in d["ways"]}
    assert all(
        w["protected"] and w["route"] == "AITER_NORM_GUARD=1 and the start-up file"
        for w in d["ways"]
        if w["exposed"] and w["name"] != "use_ray"
    )
    # Ray's workers need not inherit this environment: where ray is importable, doctor cannot tell for them
    with_ray = cli(
        "doctor", "--json", AITER_NORM_GUARD="1", PYTHONPATH=overlay("0.5.10", fake_ray(tmp_path)), release=None
    )
    ray = next(w for w in as_json(with_ray)["ways"] if w["name"] == "use_ray")
    assert ray["protected"] is None and "`AITER_NORM_GUARD=1 ray start ...`" in ray["reason"]
    assert with_ray.returncode == 1 and as_json(with_ray)["verdict"].startswith("cannot tell for: use_ray")
    assert as_json(with_ray)["headline"] == "cannot tell for use_ray: start Ray's workers with AITER_NORM_GUARD=1"
    # where it is not, --use-ray cannot start in this interpreter: not held against it (a host set up right)
    every = cli("doctor", "--json", AITER_NORM_GUARD="1")
    ray = next(w for w in as_json(every)["ways"] if w["name"] == "use_ray")
    assert every.returncode == 0 and as_json(every)["verdict"].startswith("protected"), as_json(every)["verdict"]
    assert ray["protected"] is True and ray["runs_here"] is False and "ray is not importable" in ray["route"]
    assert (
        as_json(every)["headline"] == "protected: every way of starting sglang here runs the guard "
        "(AITER_NORM_GUARD=1 and the start-up file)"
    )


@wheel
def test_doctor_plugin_route_on_0_5_11_and_upstream_checks_from_source() -> None:
    proc = cli("doctor", "--json", release="0.5.11")
    d = as_json(proc)
    assert proc.returncode == 1 and d["children"]["plugin_route"] is True  # bench_one_batch loads no plugin
    assert d["verdict"].startswith("NOT protected for: bench_one_batch (its model processes do not load sglang's")
    assert "protected for: launch_server, serve, Engine" in d["verdict"] and "AITER_NORM_GUARD=1" in d["verdict"]
    assert next(w for w in d["ways"] if w["name"] == "encoder_only")["protected"] is True  # through its launcher
    assert target(d, "RMSNorm.forward_aiter")["release_does"].startswith("0.5.11 - 0.5.12")
    assert target(d, "LayerNorm.forward_hip")["aiter_branch"] is True
    assert target(d, "communicator._fused_rmsnorm_fp8_per_token_quant")["aiter_branch"] is True
    mine = cli("doctor", "--json", "--ways", "launch_server,Engine", release="0.5.11")  # the ways a deployment uses
    assert mine.returncode == 0 and as_json(mine)["verdict"].startswith("protected"), as_json(mine)["verdict"]
    assert cli("doctor", "--ways", "no_such_way", release="0.5.11").returncode == 2
    blocked = cli("doctor", "--json", release="0.5.11", SGLANG_PLUGINS="someone_else")
    assert blocked.returncode == 1 and as_json(blocked)["children"]["sglang_plugin"]["allowed"] is False
    latest = as_json(cli("doctor", "--json", release="0.5.23"))
    rms = target(latest, "RMSNorm.forward_aiter")
    assert rms["release_does"].startswith("0.5.21 - 0.5.23")
    assert rms["guard_checks"] == ["residual shape and dtype", "weight length", "weight stride", "host tensors"]
    assert target(latest, "GemmaRMSNorm.forward_hip")["aiter_branch"] is False
    assert target(latest, "add_norm._fused_rmsnorm_fp8_per_token_quant")["present"] is True


def test_doctor_not_protected_says_what_to_do() -> None:
    proc = cli("doctor")  # 0.5.10 has no plugin loading, and nothing sets AITER_NORM_GUARD
    assert proc.returncode == 1 and "NOT protected" in proc.stdout and "\x1b[" not in proc.stdout
    assert "AITER_NORM_GUARD=1" in proc.stdout and "aiter-norm-guard run --" in proc.stdout
    first, blank, details = proc.stdout.splitlines()[:3]  # the verdict in one short line with its fix; then details
    assert first.startswith("NOT protected") and "fix: " in first and "AITER_NORM_GUARD=1" in first
    assert len(first) < 120 and blank == "" and details.startswith("verdict")


@pytest.mark.parametrize(
    ("release", "env", "code"),
    [
        ("0.5.10", {}, 1),
        ("0.5.10", {"AITER_NORM_GUARD": "0"}, 1),
        ("0.5.23", {"AITER_NORM_GUARD": "1"}, None),
        ("0.5.23", {"SGLANG_PLUGINS": "someone_else"}, 1),
        (None, {}, 0),
        ("0.4.6", {}, 0),
    ],
)
def test_doctor_first_line_is_the_verdict_in_one_short_sentence(
    release: str | None, env: dict[str, str], code: int | None
) -> None:
    proc = cli("doctor", release=release, **env)
    first = proc.stdout.splitlines()[0]
    assert len(first) < 120 and (code is None or proc.returncode == code), (first, proc.returncode)
    assert first == as_json(cli("doctor", "--json", release=release, **env))["headline"]
    assert ("fix: " in first) is first.startswith("NOT protected"), first  # a fix wherever there is one
    assert first.split(":")[0] in {
        "protected",
        "NOT protected",
        "NOT protected for any way of starting sglang; fix",
        "nothing to guard",
        "cannot tell for use_ray",
    }, first
    assert (
        as_json(cli("doctor", "--json", release=release, as_rocm=False, **env))["headline"]
        == cli("doctor", release=release, as_rocm=False, **env).stdout.splitlines()[0]
    )


@pytest.mark.parametrize("release", ["0.5.10", "0.5.11"])
def test_doctor_disabled_with_exposed_entries_exits_1_and_says_why(release: str) -> None:
    proc = cli("doctor", "--json", release=release, AITER_NORM_GUARD="off")
    d = as_json(proc)
    assert proc.returncode == 1 and d["ok"] is False and d["guard"]["reason"] == "AITER_NORM_GUARD=off"
    assert d["verdict"].startswith("NOT protected: AITER_NORM_GUARD=off turns the guard off")
    assert all(w["protected"] is False and "AITER_NORM_GUARD=off" in w["reason"] for w in d["ways"] if w["exposed"])
    assert cli("doctor", "--json", release="0.4.6", AITER_NORM_GUARD="off").returncode == 0  # nothing to guard


@pytest.mark.parametrize(
    ("release", "env", "code", "verdict"),
    [
        (None, {"AITER_NORM_GUARD": "1"}, 0, "nothing to guard: sglang is not installed"),
        (None, {}, 0, "nothing to guard: sglang is not installed"),
        ("0.4.6", {"AITER_NORM_GUARD": "1"}, 0, "nothing to guard"),
        ("0.4.6", {}, 0, "nothing to guard"),
    ],
)
def test_doctor_without_sglang_or_target(release: str | None, env: dict[str, str], code: int, verdict: str) -> None:
    proc = cli("doctor", "--json", release=release, **env)
    assert proc.returncode == code and as_json(proc)["verdict"].startswith(verdict)
    assert "sglang is not installed here" not in proc.stderr  # the CLI itself installs nothing


@pytest.mark.parametrize("damage", ["absent", "not utf-8", "unreadable"])
def test_doctor_with_a_broken_layernorm_file_says_it_cannot_tell(damage: str, tmp_path: Path) -> None:
    if os.geteuid() == 0 and damage == "unreadable":
        pytest.skip("root reads any file")
    fake = tmp_path / "site"
    shutil.copytree(REPO / ".envs" / "sglang-0.5.10" / "sglang-0.5.10.dist-info", fake / "sglang-0.5.10.dist-info")
    layers = fake / "sglang" / "srt" / "layers"
    layers.mkdir(parents=True)
    (fake / "sglang" / "__init__.py").write_text("")
    path = layers / "layernorm.py"
    if damage == "not utf-8":
        path.write_bytes(b"\xff\xfe\x00 not python")
    elif damage == "unreadable":
        path.write_text("x = 1\n")
        path.chmod(0)
    proc = cli("doctor", "--json", release=None, PYTHONPATH=str(fake))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert as_json(proc)["verdict"].startswith("cannot tell") and "layernorm.py" in as_json(proc)["verdict"]


def test_doctor_into_a_closed_pipe_ends_quietly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env["PYTHONPATH"] = str(REPO / ".envs" / "sglang-0.5.10") + os.pathsep + str(REPO)
    pipe = subprocess.run(
        f'{sys.executable} -P -W ignore -m aiter_norm_guard doctor --as-rocm | head -1; echo "rc=${{PIPESTATUS[0]}}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    first, rc = pipe.stdout.splitlines()
    assert first.startswith("NOT protected") and rc == "rc=1", pipe.stdout  # 0.5.10, nothing set: not protected
    assert "Traceback" not in pipe.stderr and "BrokenPipe" not in pipe.stderr


@pytest.mark.parametrize(("args", "code"), [(("--json",), 1), ((), 1), (("--json", "--no-rocm"), 0)])
def test_doctor_keeps_its_exit_code_when_the_reader_leaves_after_one_line(args: tuple[str, ...], code: int) -> None:
    """The pipe is shrunk to one page and closed after one read: doctor's write meets EPIPE for certain."""
    fcntl = pytest.importorskip("fcntl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env["PYTHONPATH"] = str(REPO / ".envs" / "sglang-0.5.23") + os.pathsep + str(REPO)
    flags = [a for a in args if a != "--no-rocm"] + ([] if "--no-rocm" in args else ["--as-rocm"])
    read, write = os.pipe()
    try:
        fcntl.fcntl(write, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    except OSError:
        pytest.skip("cannot shrink a pipe here")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-W", "ignore", "-m", "aiter_norm_guard", "doctor", *flags],
        stdout=write,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(write)
    first = os.read(read, 4096).split(b"\n")[0]
    os.close(read)  # the reader goes away with most of the answer unread
    _, err = proc.communicate(timeout=300)
    assert first == b"{" if "--json" in args else first.startswith(b"NOT protected"), first
    assert proc.returncode == code and b"Traceback" not in err and b"BrokenPipe" not in err, err


CASE_KEYS = {
    "case",
    "entry",
    "description",
    "x",
    "residual",
    "unguarded",
    "unguarded_detail",
    "guarded",
    "max_abs_error",
}


def test_selftest_json_on_the_pinned_release() -> None:
    proc = cli("selftest", "--json", "--tokens", "256")
    report = as_json(proc)
    assert proc.returncode == 0 and report["passed"] is True and report["mode"] == "emulated"
    assert report["sglang"] == "0.5.10" and report["guard_enabled_in_env"] is True
    by_case = {c["case"]: c for c in report["cases"]}
    assert all(set(c) == CASE_KEYS for c in report["cases"])
    assert by_case["qkv_q_view"]["unguarded"] == by_case["qkv_k_view"]["unguarded"] == "fault"
    assert by_case["qkv_q_view"]["x"] == "(256, 32, 128) / (6144, 128, 1)"
    assert by_case["dtype_mismatch"]["unguarded"] == "wrong" and by_case["safe_2d"]["unguarded"] == "ok"
    assert by_case["gemma_zero_rows"]["unguarded"] == "fault" and "layernorm_zero_rows" not in by_case
    assert all(c["guarded"] == "ok" for c in report["cases"])


def test_selftest_table_isolated_children_and_disabled_note() -> None:
    proc = cli("selftest", "--isolate", "--tokens", "64", "--cases", "qkv_q_view,safe_2d", AITER_NORM_GUARD="0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "EMULATED" in lines[0] and "\x1b[" not in proc.stdout  # plain text when piped
    assert any(ln.startswith("note: the guard was forced on") for ln in lines)
    assert any(ln.startswith("qkv_q_view") and " fault " in ln and " ok " in ln for ln in lines)
    assert lines[-1].startswith("PASS")


def test_selftest_without_sglang_fails_clearly() -> None:
    proc = cli("selftest", "--json", release=None)
    assert proc.returncode == 1 and "cannot import" in as_json(proc)["error"]


def test_selftest_agrees_with_doctor_where_there_is_nothing_to_guard() -> None:
    proc = cli("selftest", "--json", release="0.4.6")
    assert proc.returncode == 0 and "nothing to guard" in as_json(proc)["not_applicable"]
    assert as_json(proc)["passed"] is None and as_json(proc)["cases"] == []  # nothing ran: neither pass nor fail
    assert as_json(proc)["exit_code"] == 0
    assert cli("doctor", release="0.4.6").returncode == 0


@pytest.mark.parametrize("tokens", ["0", "-5", "many"])
def test_selftest_refuses_a_token_count_that_tests_nothing(tokens: str) -> None:
    proc = cli("selftest", "--tokens", tokens, release=None)
    assert proc.returncode == 2 and "tokens" in proc.stderr and "Traceback" not in proc.stderr


def test_selftest_errors_are_json_when_json_is_asked() -> None:
    proc = cli("selftest", "--json", "--cases", "nope", release=None)
    assert proc.returncode == 2 and "unknown case" in as_json(proc)["error"] and as_json(proc)["exit_code"] == 2


def test_colour_only_when_asked() -> None:
    report = {
        "mode": "emulated",
        "tokens": 1,
        "sglang": "x",
        "passed": True,
        "cases": [
            {"case": "c", "x": "-", "unguarded": "fault", "guarded": "ok", "max_abs_error": 0.0, "unguarded_detail": ""}
        ],
    }
    assert "\x1b[31m" in selftest_report.format_table(report, colour=True)
    assert "\x1b[" not in selftest_report.format_table(report, colour=False)


@wheel
@pytest.mark.parametrize("plugins", [",", " ", "someone_else"])
def test_doctor_reads_sglang_plugins_as_sglang_does(plugins: str) -> None:
    """A non-empty SGLANG_PLUGINS is the whole whitelist, even ',' or ' ': nothing is loaded."""
    proc = cli("doctor", "--json", release="0.5.11", SGLANG_PLUGINS=plugins)
    assert proc.returncode == 1 and as_json(proc)["children"]["plugin_route"] is False


@pytest.mark.parametrize(("args", "code", "stream"), [(["run", "--", ""], 2, "stderr"), (["run", "-h"], 0, "stdout")])
def test_run_usage_and_an_empty_command(args: list[str], code: int, stream: str) -> None:
    proc = cli(*args, release=None)
    assert proc.returncode == code and "usage: aiter-norm-guard run" in getattr(proc, stream)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("redirect", ["closed", "full"])
def test_doctor_with_stdout_closed_or_full_ends_without_a_traceback(redirect: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env["PYTHONPATH"] = str(REPO / ".envs" / "sglang-0.5.10") + os.pathsep + str(REPO)
    target = ">&-" if redirect == "closed" else "> /dev/full"
    proc = subprocess.run(
        f"{sys.executable} -P -W ignore -m aiter_norm_guard doctor --json {target}",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_doctor_on_a_host_that_takes_no_aiter_path_says_not_affected() -> None:
    """This CPU host: torch is not a ROCm build, aiter is not installed: sglang cannot reach an aiter kernel."""
    proc = cli("doctor", "--json", as_rocm=False)
    d = as_json(proc)
    assert proc.returncode == 0 and d["ok"] is True and d["torch"]["hip"] is None and not d["aiter"]["importable"]
    assert d["verdict"].startswith(
        "this host takes no aiter path (torch is not a ROCm build, aiter not installed): "
        "sglang here is not affected; the listing below is what a ROCm host"
    )
    assert d["host"] == {
        "takes_aiter_path": False,
        "as_rocm": False,
        "why_not": "torch is not a ROCm build, aiter not installed",
    }
    assert target(d, "RMSNorm.forward_aiter")["aiter_branch"]  # the listing is still there
    rocm = cli("doctor", "--json")  # --as-rocm: the same sglang judged as on a ROCm host with aiter
    assert rocm.returncode == 1 and as_json(rocm)["host"]["as_rocm"] and "NOT protected" in as_json(rocm)["verdict"]
    assert "judge as if on a ROCm host with aiter" in " ".join(cli("doctor", "--help").stdout.split())


def test_doctor_reads_torch_and_aiter_without_importing_them() -> None:
    code = (
        "import sys; from aiter_norm_guard.cli import doctor; d = doctor.diagnose(); "
        "print(sorted(m for m in ('torch', 'sglang', 'aiter') if m in sys.modules), d['torch']['version'])"
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / ".envs" / "sglang-0.5.10"), str(REPO)])},
    )
    imported, version = proc.stdout.split(" ", 1)
    assert proc.returncode == 0 and imported == "[]", proc.stderr
    import torch

    assert version.strip() == torch.__version__


def test_doctor_without_sglang_in_this_interpreter_says_so() -> None:
    proc = cli("doctor", release=None)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and "run doctor with the Python that runs sglang" in lines[0]
    assert lines[3].split() == [
        "warning",
        *"this interpreter has no sglang; run doctor with the Python that runs sglang".split(),
    ], lines
    assert as_json(cli("doctor", "--json", release=None))["warnings"] == [
        "this interpreter has no sglang; run doctor with the Python that runs sglang"
    ]


def test_doctor_with_unreadable_sglang_metadata_cannot_tell(tmp_path: Path) -> None:
    """A METADATA that is not UTF-8 is not a usage error (2): doctor cannot tell (1), and says why."""
    dist = tmp_path / "sglang-0.5.99.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: sglang\nVersion: 0.5.99\nAuthor: Jos\xe9\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / ".envs" / "sglang-0.5.16")])}
    proc = cli("doctor", "--json", release=None, **env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    verdict = as_json(proc)["verdict"]
    assert verdict.startswith("cannot tell: cannot read sglang's package metadata: UnicodeDecodeError"), verdict
    status = cli("status", "--json", release=None, **env)
    assert status.returncode == 0 and as_json(status)["sglang"]["installed"] is None


def test_run_finds_the_python_a_command_runs(tmp_path: Path) -> None:
    from aiter_norm_guard.cli.interpreter import python_of

    env = {"PATH": os.environ.get("PATH", "")}
    scripts = {
        "direct": f"#!{sys.executable}\n",
        "env": "#!/usr/bin/env -S python3 -u\n",
        "pip": f"#!/bin/sh\n'''exec' {sys.executable} \"$0\" \"$@\"\n' '''\n",
        "shell": "#!/bin/sh\necho\n",
        "none": "print(1)\n",
    }
    found = {}
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        found[name] = python_of(str(tmp_path / name), env)
    assert found["direct"] == found["pip"] == sys.executable and found["shell"] is None and found["none"] is None
    assert found["env"] == shutil.which("python3")
    assert python_of(sys.executable, env) == sys.executable and python_of("no-such-command-xyz", env) is None
