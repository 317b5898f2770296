"""selftest's report: strict JSON (null, never NaN), cases that do not apply here, status's counts."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from test_cli import cli

from aiter_norm_guard.cli import selftest, strict
from conftest import run_python


def reject(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=reject)


def test_max_abs_error_has_no_number_where_there_is_none() -> None:
    want = torch.ones(2, 4)
    assert selftest._max_err(torch.full((2, 4), float("nan")), want) is None
    assert selftest._max_err(torch.ones(8), want) is None  # another shape
    assert selftest._max_err(want + 0.5, want) == 0.5
    assert strict({"a": [float("nan"), float("inf"), 1.5, {"b": -math.inf}]}) == {"a": [None, None, 1.5, {"b": None}]}


FAILING_BUILD = """
import sys
from aiter_norm_guard.cli import main, selftest

def broken(*args):
    raise RuntimeError("no such device here")

selftest._build = broken
sys.exit(main(["selftest", {args}"--tokens", "16", "--cases", "safe_2d,zero_rows"]))
"""


@pytest.mark.parametrize("as_json", [True, False])
def test_a_case_that_cannot_be_built_fails_with_null_not_nan(as_json: bool) -> None:
    proc = run_python(FAILING_BUILD.format(args='"--json", ' if as_json else ""))
    assert proc.returncode == 1, proc.stderr
    if as_json:
        report = strict_json(proc.stdout)
        assert [c["max_abs_error"] for c in report["cases"]] == [None, None] and report["passed"] is False
        assert report["exit_code"] == 1
        assert all(c["guarded"] == "fail" and "no such device" in c["unguarded_detail"] for c in report["cases"])
    else:
        rows = [ln for ln in proc.stdout.splitlines() if ln.startswith(("safe_2d", "zero_rows"))]
        assert len(rows) == 2 and all(" fail " in r and "         - " in r for r in rows)
        assert proc.stdout.splitlines()[-1] == "FAIL"


def test_doctor_and_selftest_json_parse_strictly() -> None:
    strict_json(cli("doctor", "--json").stdout)
    report = strict_json(cli("selftest", "--json", "--tokens", "16", "--cases", "dtype_mismatch").stdout)
    assert report["passed"] is True and report["cases"][0]["unguarded"] == "wrong"


@pytest.mark.parametrize(
    ("release", "cases", "reason"),
    [
        ("0.5.10", "layernorm_zero_rows", "LayerNorm.forward_hip has no aiter branch in sglang 0.5.10"),
        ("0.5.16", "gemma_zero_rows", "GemmaRMSNorm.forward_hip has no aiter branch in sglang 0.5.16"),
        ("0.5.16", "gemma_zero_rows,gemma_dtype_mismatch", "GemmaRMSNorm.forward_hip has no aiter branch"),
    ],
)
def test_requested_cases_that_do_not_apply_are_not_applicable(release: str, cases: str, reason: str) -> None:
    proc = cli("selftest", "--json", "--tokens", "16", "--cases", cases, release=release)
    report = strict_json(proc.stdout)
    assert proc.returncode == 0 and report["cases"] == [] and "not_applicable" in report
    assert report["passed"] is None and report["exit_code"] == 0  # --json tells the verdict without `passed`
    assert [c["case"] for c in report["not_applicable_cases"]] == cases.split(",")
    assert all(c["reason"].startswith(reason) for c in report["not_applicable_cases"])
    table = cli("selftest", "--tokens", "16", "--cases", cases, release=release)
    assert table.returncode == 0 and f"{cases.split(',')[0]:24} n/a: {reason}" in table.stdout
    assert table.stdout.splitlines()[-1].startswith("NOT APPLICABLE") and "FAIL" not in table.stdout


def test_cases_that_apply_are_judged_beside_those_that_do_not() -> None:
    proc = cli("selftest", "--json", "--tokens", "16", "--cases", "layernorm_zero_rows,zero_rows")
    report = strict_json(proc.stdout)
    assert proc.returncode == 0 and report["passed"] is True and "not_applicable" not in report
    assert report["exit_code"] == 0
    assert [c["case"] for c in report["cases"]] == ["zero_rows"]
    assert [c["case"] for c in report["not_applicable_cases"]] == ["layernorm_zero_rows"]
    full = cli("selftest", "--tokens", "16")
    assert full.returncode == 0 and "not applicable here: layernorm_zero_rows, layernorm_transposed" in full.stdout
    assert full.stdout.splitlines()[-1].startswith("PASS")


def test_status_says_how_to_read_the_interventions() -> None:
    proc = cli("status")
    assert proc.returncode == 0 and "interventions: none in this process" in proc.stdout
    assert "aiter_norm_guard_interventions_total" in proc.stdout
    assert strict_json(cli("status", "--json").stdout)["interventions"] == []


# -- isolation: one child imports sglang once and runs the cases in order; a crash ends only its case ----------
ISOLATED = """
import json
from aiter_norm_guard.cli import selftest
selftest.WORKER = {prelude!r} + selftest.WORKER
report = selftest.run(tokens=16, emulated=True, isolate=True, cases={cases!r}, jobs={jobs})
rows = [[c["case"], c["unguarded"], c["guarded"], c["unguarded_detail"]] for c in report["cases"]]
print(json.dumps({{"isolation": report["isolation"], "passed": report["passed"], "rows": rows}}))
"""
#: in the child: die (as a memory fault aborts a ROCm process) when one of ``DIE`` is built
DIES = """
import os
from aiter_norm_guard.cli import selftest as _s
_build = _s._build
def _dying(ln, case, *a):
    if case.name in {die!r}:
        os._exit(139)
    return _build(ln, case, *a)
_s._build = _dying
"""
#: in the child: every fault leaves the device unusable (as a sticky CUDA / HIP error does)
POISONED = """
from aiter_norm_guard.cli import selftest as _s
_s._device_usable = lambda emulated: False
"""


def isolated(cases: list[str], prelude: str = "", jobs: int = 1) -> dict[str, Any]:
    proc = run_python(ISOLATED.format(prelude=prelude, cases=cases, jobs=jobs), env={"AITER_NORM_GUARD": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return strict_json(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_one_child_runs_every_isolated_case() -> None:
    got = isolated(["qkv_q_view", "zero_rows", "dtype_mismatch", "safe_2d"])
    assert got["isolation"] == {"children": 1, "jobs": 1} and got["passed"] is True
    assert [r[:3] for r in got["rows"]] == [
        ["qkv_q_view", "fault", "ok"],
        ["zero_rows", "fault", "ok"],
        ["dtype_mismatch", "wrong", "ok"],
        ["safe_2d", "ok", "ok"],
    ]
    assert got["rows"][0][3].startswith("MemoryAccessFault") and got["rows"][1][3].startswith("InvalidConfiguration")


def test_a_child_that_dies_faults_that_case_and_a_fresh_child_runs_the_rest() -> None:
    cases = ["qkv_q_view", "zero_rows", "dtype_mismatch", "safe_2d", "safe_2d_residual"]  # CASES' order
    got = isolated(cases, DIES.format(die=["qkv_q_view", "dtype_mismatch"]))
    rows = {r[0]: r for r in got["rows"]}
    assert sorted(rows) == sorted(cases) and got["passed"] is True
    for name in ("qkv_q_view", "dtype_mismatch"):  # the case the child died in: its fault, with the exit code
        assert rows[name][1] == "fault" and rows[name][3].startswith("child exit 139"), rows[name]
    assert rows["safe_2d"][1] == "ok" and rows["safe_2d_residual"][1] == "ok"  # not hidden by a crash before
    assert rows["zero_rows"][1] == "fault" and rows["zero_rows"][3].startswith("InvalidConfiguration")
    assert got["isolation"] == {"children": 3, "jobs": 1}  # one, and one after each death with cases left


def test_a_poisoned_device_ends_the_child_after_its_case() -> None:
    got = isolated(["qkv_q_view", "safe_2d", "zero_rows", "dtype_mismatch"], POISONED)  # run in CASES' order
    assert [r[:2] for r in got["rows"]] == [
        ["qkv_q_view", "fault"],
        ["zero_rows", "fault"],
        ["dtype_mismatch", "wrong"],
        ["safe_2d", "ok"],
    ]
    assert got["rows"][0][3].startswith("MemoryAccessFault")  # the case's own error, reported before exiting
    assert got["isolation"] == {"children": 3, "jobs": 1}


def test_children_side_by_side_give_the_same_verdicts() -> None:
    cases = ["qkv_q_view", "safe_2d", "dtype_mismatch", "zero_rows"]
    one, two = isolated(cases), isolated(cases, DIES.format(die=["qkv_q_view"]), jobs=2)
    assert [r[:2] for r in two["rows"]][1:] == [r[:2] for r in one["rows"]][1:]
    assert two["rows"][0][3].startswith("child exit 139") and two["isolation"]["jobs"] == 2
    assert two["isolation"]["children"] in (2, 3)  # a replacement starts only if the other child left cases
