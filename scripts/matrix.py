"""The release matrix: the guard's behavioural cases against every pinned sglang release.

For each release in RELEASES it runs ``tests/test_guard.py`` in a fresh interpreter with
that release's overlay (``.envs/sglang-X``) on ``PYTHONPATH``, collects pass / fail / n/a
per case from pytest's JUnit XML, prints the release x case table and writes it as JSON
(``results/matrix.json``).  Exit status 1 if any applicable case failed or a release's
run broke.  Run it with the interpreter whose environment has the guard installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASES = os.environ.get("RELEASES", "0.4.6 0.4.10 0.5.10 0.5.11 0.5.16 0.5.23").split()
OUT = ROOT / "results"


def case_of(name: str) -> str:
    """``test_guarded_call_matches_forward_native[qkv_q_view]`` -> ``matches_native:qkv_q_view``."""
    m = re.match(r"test_(.*?)(?:\[(.*)\])?$", name)
    assert m
    short = {
        "guarded_call_matches_forward_native": "matches_native",
        "guarded_call_equals_release_on_canonical_inputs": "bit_exact_vs_release",
        "unguarded_release_faults_or_is_wrong": "bug_reproduced_unguarded",
        "guard_adds_no_second_copy": "no_second_copy",
        "safe_layout_reaches_kernel_as_the_same_object": "zero_copy_same_object",
        "row_strided_mode_hands_the_callers_view_to_the_kernel": "row_strided_mode_zero_copy",
    }.get(m.group(1), m.group(1))
    return f"{short}:{m.group(2)}" if m.group(2) else short


def run_release(release: str) -> tuple[dict[str, str], str]:
    OUT.mkdir(exist_ok=True)
    xml = OUT / f"junit-{release}.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".envs" / f"sglang-{release}")}
    env.pop("AITER_NORM_GUARD", None)
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
        str(ROOT / "tests" / "test_guard.py"),
        f"--junitxml={xml}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    results: dict[str, str] = {}
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            kinds = {child.tag for child in tc}
            outcome = "fail" if kinds & {"failure", "error"} else "n/a" if "skipped" in kinds else "pass"
            results[case_of(tc.get("name", "?"))] = outcome
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode not in (0, 5) and not any(v == "fail" for v in results.values()):
        results["run"] = "fail"
        tail += "\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    return results, tail


def summary(releases: list[str], table: dict[str, dict[str, str]]) -> str:
    """Release x check (cases grouped): pass (count), n/a (count) or FAIL, as a Markdown table."""
    groups: dict[str, dict[str, list[str]]] = {}
    for r in releases:
        for case, outcome in table[r].items():
            groups.setdefault(case.split(":")[0], {}).setdefault(r, []).append(outcome)

    def cell(vs: list[str]) -> str:
        if "fail" in vs:
            return f"{vs.count('fail')} FAIL"
        passed, na = vs.count("pass"), vs.count("n/a")
        return "n/a" if not passed else f"pass ({passed})" + (f", n/a ({na})" if na else "")

    lines = ["| check | " + " | ".join(releases) + " |", "| --- |" + " --- |" * len(releases)]
    lines += [f"| {g} | " + " | ".join(cell(row.get(r, [])) for r in releases) + " |" for g, row in groups.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    table: dict[str, dict[str, str]] = {}
    with ThreadPoolExecutor(max_workers=int(os.environ.get("MATRIX_JOBS", "2"))) as pool:  # one interpreter each
        for release, (results, tail) in zip(RELEASES, pool.map(run_release, RELEASES), strict=True):
            table[release] = results
            print(f"sglang {release}: {tail}", flush=True)
    cases = sorted({c for row in table.values() for c in row})
    width = max(len(c) for c in cases)
    print(f"\n{'case':<{width}}  " + "  ".join(f"{r:>6}" for r in RELEASES))
    for c in cases:
        print(f"{c:<{width}}  " + "  ".join(f"{table[r].get(c, '-'):>6}" for r in RELEASES))
    OUT.mkdir(exist_ok=True)
    (OUT / "matrix.json").write_text(json.dumps({"releases": RELEASES, "table": table}, indent=2))
    (OUT / "matrix.md").write_text(summary(RELEASES, table))
    print("\n" + summary(RELEASES, table))
    failed = [(r, c) for r, row in table.items() for c, v in row.items() if v == "fail"]
    ran = sum(v == "pass" for row in table.values() for v in row.values())
    print(f"\nmatrix: {ran} passed, {len(failed)} failed across {len(RELEASES)} releases; results/matrix.json")
    for r, c in failed:
        print(f"FAILED sglang {r}: {c}")
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
