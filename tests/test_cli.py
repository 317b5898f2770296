"""``doctor`` and ``selftest``: tables, --json schemas, exit codes, and the hard situations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from aiter_norm_guard import selftest
from aiter_norm_guard.doctor import release_guard_level
from aiter_norm_guard.startup import startup_file
from conftest import REPO

wheel = pytest.mark.skipif(startup_file() is None, reason="start-up file not installed (install the wheel)")


def cli(*args: str, release: str | None = "0.5.10", **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    full["PYTHONPATH"] = str(REPO / ".envs" / f"sglang-{release}") if release else ""
    if "site-packages" not in str(REPO / "aiter_norm_guard") and startup_file() is None:
        full["PYTHONPATH"] += os.pathsep + str(REPO)  # a source checkout
    full.update(env)
    return subprocess.run(
        [sys.executable, "-P", "-W", "ignore", "-m", "aiter_norm_guard", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


DOCTOR_KEYS = {"verdict", "ok", "guard", "sglang", "aiter", "torch", "children"}


@wheel
def test_doctor_protected_by_env_and_start_up_file() -> None:
    proc = cli("doctor", "--json", AITER_NORM_GUARD="1")
    d = as_json(proc)
    assert proc.returncode == 0 and set(d) == DOCTOR_KEYS and d["verdict"] == "protected"
    assert d["sglang"]["version"] == "0.5.10" and d["sglang"]["layernorm"]["found"] is True
    assert d["sglang"]["layernorm"]["parameters"] == ["x", "residual", "post_residual_addition"]
    assert d["sglang"]["release_guard_level"] == d["sglang"]["layernorm"]["source_level"] == "none"
    assert d["children"]["inherit"] is True and d["aiter"]["importable"] is False
    assert d["torch"]["version"]


@wheel
def test_doctor_plugin_route_on_0_5_11_and_upstream_level_from_source() -> None:
    d = as_json(cli("doctor", "--json", release="0.5.11"))
    assert d["verdict"] == "protected" and d["children"]["plugin_route"] is True
    assert d["sglang"]["layernorm"]["source_level"] == "x without residual" == d["sglang"]["release_guard_level"]
    blocked = cli("doctor", "--json", release="0.5.11", SGLANG_PLUGINS="someone_else")
    assert blocked.returncode == 1 and as_json(blocked)["children"]["sglang_plugin"]["allowed"] is False
    full = as_json(cli("doctor", "--json", release="0.5.23"))
    assert full["sglang"]["layernorm"]["source_level"] == "full" == full["sglang"]["release_guard_level"]


def test_doctor_not_protected_when_nothing_will_load_the_guard() -> None:
    proc = cli("doctor")  # 0.5.10 has no plugin loading, and nothing sets AITER_NORM_GUARD
    assert proc.returncode == 1 and "not protected" in proc.stdout and "\x1b[" not in proc.stdout
    assert proc.stdout.splitlines()[0].startswith("verdict")


def test_doctor_disabled_is_not_an_error() -> None:
    proc = cli("doctor", "--json", AITER_NORM_GUARD="off")
    assert proc.returncode == 0 and as_json(proc)["verdict"] == "disabled"
    assert as_json(proc)["guard"]["reason"] == "AITER_NORM_GUARD=off"


@pytest.mark.parametrize(
    ("release", "env", "code", "verdict"),
    [
        (None, {"AITER_NORM_GUARD": "1"}, 1, "sglang not installed"),
        (None, {}, 0, "sglang not installed"),
        ("0.4.6", {"AITER_NORM_GUARD": "1"}, 1, "nothing to guard"),
        ("0.4.6", {}, 0, "nothing to guard"),
    ],
)
def test_doctor_without_sglang_or_target(release: str | None, env: dict[str, str], code: int, verdict: str) -> None:
    proc = cli("doctor", "--json", release=release, **env)
    assert proc.returncode == code and as_json(proc)["verdict"].startswith(verdict)


def test_release_table() -> None:
    assert [release_guard_level(v) for v in ("0.4.6", "0.4.10", "0.5.10", "0.5.11", "0.5.19", "0.5.20", "0.5.23")] == [
        "no forward_aiter",
        "none",
        "none",
        "x without residual",
        "x without residual",
        "full",
        "full",
    ]


CASE_KEYS = {"case", "description", "x", "residual", "unguarded", "unguarded_detail", "guarded", "max_abs_error"}


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
    assert all(c["guarded"] == "ok" for c in report["cases"])


def test_selftest_table_isolated_children_and_disabled_note() -> None:
    proc = cli("selftest", "--isolate", "--tokens", "64", "--cases", "qkv_q_view,safe_2d", AITER_NORM_GUARD="0")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "EMULATED" in lines[0] and "\x1b[" not in proc.stdout  # plain text when piped
    assert any(ln.startswith("note: the guard was forced on") for ln in lines)
    assert any(ln.startswith("qkv_q_view") and " fault " in ln and " ok " in ln for ln in lines)
    assert lines[-1].startswith("PASS")


@pytest.mark.parametrize(("release", "error"), [(None, "cannot import"), ("0.4.6", "does not use aiter")])
def test_selftest_without_sglang_or_target_fails_clearly(release: str | None, error: str) -> None:
    proc = cli("selftest", "--json", release=release)
    assert proc.returncode == 1 and error in as_json(proc)["error"]


def test_selftest_rejects_unknown_cases() -> None:
    proc = cli("selftest", "--cases", "nope", release=None)
    assert proc.returncode == 2 and "unknown case" in proc.stderr


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
    assert "\x1b[31m" in selftest.format_table(report, colour=True)
    assert "\x1b[" not in selftest.format_table(report, colour=False)
