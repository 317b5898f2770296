"""The CPU benchmark suite: the guard against each release's own code, per input class, and start-up.

    python -P benchmarks/run.py          (scripts/bench.sh does the set-up and uses the wheel venv)

Not a test: nothing here asserts a time.  For each release (0.5.10, 0.5.16, 0.5.23 by default,
``BENCH_RELEASES`` to change) one process times the release's own entry and the guard built
around it, interleaved (``benchmarks/_worker.py`` says how), per input class; and counts the
copies each makes.  Goals (issue "Exact kernel contracts"): on 0.5.16 and 0.5.23 every class at
most 1.2x the release (2-D contiguous 1.3x), copies never above the release's, the residual path
no more than 0.5.19's full fix adds.  Results: stdout, results/bench.md, results/bench.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RELEASES = os.environ.get("BENCH_RELEASES", "0.5.10 0.5.16 0.5.23").split()
GOAL_RELEASES = ("0.5.16", "0.5.23")


def worker(release: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_"))}
    env.update(AITER_NORM_GUARD="0", PYTHONPATH=str(ROOT / ".envs" / f"sglang-{release}"))
    proc = subprocess.run(
        [sys.executable, "-P", "-W", "ignore", str(ROOT / "benchmarks" / "_worker.py"), release],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {release} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def goal(release: str, name: str) -> float | None:
    if release not in GOAL_RELEASES:
        return None
    return 1.3 if name.endswith(": 2-D contiguous") and name.startswith("RMSNorm:") else 1.2


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    ns, release = r["ns"], r["release"]
    out = []
    for key in ns:
        if not key.endswith(" | guard") or key.startswith("ablation") or " weight: " in key:
            continue
        name = key.removesuffix(" | guard")
        own, mine = ns[f"{name} | release"], ns[key]
        row: dict[str, Any] = {"class": name, "release_ns": own, "guard_ns": mine, "ratio": mine / own}
        target = goal(release, name)
        row["goal"], row["met"] = target, None if target is None else mine / own <= target
        row["copies"] = r["copies"].get(name)
        out.append(row)
    return out


def weight_kinds(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The guard's overhead with a plain-tensor or buffer weight against a Parameter's: no cliff (<= 1.2)."""
    ns = r["ns"]
    base = ns["RMSNorm: 2-D contiguous | guard"] - ns["RMSNorm: 2-D contiguous | release"]
    out = []
    for kind in ("plain-tensor", "buffer"):
        key = f"RMSNorm, {kind} weight: 2-D contiguous"
        if f"{key} | guard" in ns:
            over = ns[f"{key} | guard"] - ns[f"{key} | release"]
            out.append({"weight": kind, "overhead_ns": over, "parameter_ns": base, "ratio": over / base})
    return out


def ablation(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The residual path's checks, one at a time around the release's call: ns each adds."""
    ns, own = r["ns"], r["ns"]["RMSNorm: 2-D with residual | release"]
    steps = sorted(k for k in ns if k.startswith("ablation "))
    out, before = [], own
    for k in steps:
        out.append({"check": k.split(": ", 1)[1], "adds_ns": ns[k] - before})
        before = ns[k]
    return out


def residual_fix(r: dict[str, Any]) -> dict[str, float] | None:
    ns = r["ns"]
    fix = ns.get("RMSNorm: 2-D with residual | 0.5.19's full fix")
    if fix is None or tuple(int(p) for p in r["release"].split(".")) >= (0, 5, 19):  # it has the fix itself
        return None
    own = ns["RMSNorm: 2-D with residual | release"]
    return {"guard_adds_ns": ns["RMSNorm: 2-D with residual | guard"] - own, "fix_adds_ns": fix - own}


def startup(python: str, env_value: str | None, runs: int = 15) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("AITER_NORM_GUARD", "PYTHONPATH")}
    if env_value is not None:
        env["AITER_NORM_GUARD"] = env_value
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _copies(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    g, u = c["guard"], c["release"]
    return f"{g['copies']} ({g['bytes']} B) / {u['copies']} ({u['bytes']} B)"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Python time per call, guard vs the release's own entry (kernels: no-ops; {result['shape']} bf16; "
        "one process per release, interleaved, min of repeats)",
        "",
    ]
    for release, table in result["tables"].items():
        lines += [
            f"### sglang {release}",
            "",
            "| class | release ns | guard ns | guard / release | goal | copies guard / release |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for row in table:
            met = "-" if row["goal"] is None else f"<= {row['goal']}: {'met' if row['met'] else 'NOT met'}"
            lines.append(
                f"| {row['class']} | {row['release_ns']:.0f} | {row['guard_ns']:.0f} | {row['ratio']:.2f} | "
                f"{met} | {_copies(row['copies'])} |"
            )
        fix = result["residual_fix"].get(release)
        if fix:
            lines += [
                "",
                f"Residual path: the guard adds {fix['guard_adds_ns']:.0f} ns to {release}'s own call; "
                "0.5.19's full fix (its forward_aiter in this process) adds "
                f"{fix['fix_adds_ns']:.0f} ns.",
            ]
        kinds = result["weight_kinds"].get(release) or []
        lines += [
            "",
            "Weight kinds: the guard's overhead (ns) against a Parameter weight's (no cliff: <= 1.2): "
            + "; ".join(
                f"{k['weight']} {k['overhead_ns']:.0f} / {k['parameter_ns']:.0f} = {k['ratio']:.2f}" for k in kinds
            ),
        ]
        steps = result["ablation"].get(release) or []
        if steps and release in GOAL_RELEASES:
            lines += [
                "",
                f"Where the residual path's time goes on {release} (each check added in place, ns):",
                "",
                "| check | ns |",
                "| --- | ---: |",
            ]
            lines += [f"| `{a['check']}` | {a['adds_ns']:+.0f} |" for a in steps]
        lines.append("")
    lines += ["Interpreter start-up (`python -c pass`, median ms)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in result["startup_ms"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    raw = {release: worker(release) for release in RELEASES}
    wheel_py = str(ROOT / ".cache" / "wheel-venv" / "bin" / "python")
    result = {
        "shape": "8 x 4096",
        "tables": {release: rows(r) for release, r in raw.items()},
        "residual_fix": {release: residual_fix(r) for release, r in raw.items()},
        "ablation": {release: ablation(r) for release, r in raw.items()},
        "weight_kinds": {release: weight_kinds(r) for release, r in raw.items()},
        "raw_ns": {release: r["ns"] for release, r in raw.items()},
        "startup_ms": {
            "absent (no start-up file)": startup(str(ROOT / ".venv" / "bin" / "python"), None),
            "installed, AITER_NORM_GUARD unset": startup(wheel_py, None),
            "installed, AITER_NORM_GUARD=0": startup(wheel_py, "0"),
            "installed, AITER_NORM_GUARD=1": startup(wheel_py, "1"),
        },
        "python": sys.version.split()[0],
    }
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    md = render(result)
    (out / "bench.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
