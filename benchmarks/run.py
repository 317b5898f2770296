"""The benchmark suite: Python overhead of the guard beside the upstream inline fix, in one run.

    python -P benchmarks/run.py          (scripts/bench.sh does the set-up and uses the wheel venv)

1. per-call ns on the already-safe path (2-D contiguous; 1/8/64/256 tokens; hidden 128/4096):
   0.5.10 forward_aiter unguarded (the floor), 0.5.10 guarded, 0.5.11 forward_aiter (inline
   fix), 0.5.23 forward_aiter prologue; overheads are differences from the floor, and ratios.
2. copies and bytes per call for each layout class, guard against upstream.
3. interpreter start-up with the start-up file (absent / installed-off / installed-on) and
   the import time of aiter_norm_guard.
Each variant runs in its own interpreter with its release overlay; the variants are run in
ROUNDS interleaved rounds and each cell keeps its minimum.  Results: table on stdout,
results/bench.json and results/bench.md.
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
VARIANTS = {  # name: (release, worker mode, extra env)
    "floor_0.5.10_unguarded": ("0.5.10", "unguarded", {}),  # its overhead vs its own floor is ~0: a noise check
    "guard_0.5.10": ("0.5.10", "guarded", {}),
    "guard_0.5.10_row_strided_mode": ("0.5.10", "guarded", {"AITER_NORM_GUARD_ROW_STRIDED": "1"}),
    "inline_fix_0.5.11": ("0.5.11", "unguarded", {}),
    "prologue_0.5.23": ("0.5.23", "prologue", {}),
}


def worker(release: str, mode: str, extra: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITER_NORM_GUARD")}
    env.update(extra, PYTHONPATH=str(ROOT / ".envs" / f"sglang-{release}"))
    proc = subprocess.run(
        [sys.executable, "-P", "-W", "ignore", str(ROOT / "benchmarks" / "_worker.py"), mode],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {release}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def startup(python: str, env_value: str | None, runs: int = 15) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("AITER_NORM_GUARD", "PYTHONPATH")}
    if env_value is not None:
        env["AITER_NORM_GUARD"] = env_value
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def import_ms(python: str, runs: int = 10) -> float:
    vals = []
    env = {k: v for k, v in os.environ.items() if k not in ("AITER_NORM_GUARD", "PYTHONPATH")}
    for _ in range(runs):
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", "import aiter_norm_guard"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        line = [ln for ln in proc.stderr.splitlines() if ln.rstrip().endswith("| aiter_norm_guard")][-1]
        vals.append(int(line.split("|")[1]) / 1000)
    return statistics.median(vals)


def main() -> int:
    runs: dict[str, dict[str, Any]] = {}
    overheads: dict[str, dict[str, list[float]]] = {}
    for _ in range(ROUNDS):
        for name, spec in VARIANTS.items():
            res = worker(*spec)
            runs.setdefault(name, res)
            for cell, ns in res["per_call_ns"].items():
                overheads.setdefault(name, {}).setdefault(cell, []).append(ns - res["floor_ns"][cell])
    over_med = {n: {c: statistics.median(v) for c, v in cells.items()} for n, cells in overheads.items()}
    floor = runs["floor_0.5.10_unguarded"]["floor_ns"]
    rows = []
    for cell in floor:
        over = {n: over_med[n][cell] for n in ("guard_0.5.10", "inline_fix_0.5.11", "prologue_0.5.23")}
        rows.append(
            {
                "cell": cell,
                "floor_ns": floor[cell],
                "guard_overhead_ns": over["guard_0.5.10"],
                "inline_fix_overhead_ns": over["inline_fix_0.5.11"],
                "prologue_overhead_ns": over["prologue_0.5.23"],
                "guard_vs_inline_fix": over["guard_0.5.10"] / over["inline_fix_0.5.11"],
                "guard_vs_prologue": over["guard_0.5.10"] / over["prologue_0.5.23"],
            }
        )
    wheel_py = str(ROOT / ".cache" / "wheel-venv" / "bin" / "python")
    base_py = str(ROOT / ".venv" / "bin" / "python")
    start = {
        "absent (no start-up file)": startup(base_py, None),
        "installed, AITER_NORM_GUARD unset": startup(wheel_py, None),
        "installed, AITER_NORM_GUARD=0": startup(wheel_py, "0"),
        "installed, AITER_NORM_GUARD=1": startup(wheel_py, "1"),
    }
    totals = {
        k: sum(r[k] for r in rows[:-1]) for k in ("guard_overhead_ns", "inline_fix_overhead_ns", "prologue_overhead_ns")
    }
    result = {
        "rows": rows,
        "safe_path_total_ns": totals,
        "guard_vs_inline_fix_overall": totals["guard_overhead_ns"] / totals["inline_fix_overhead_ns"],
        "guard_vs_prologue_overall": totals["guard_overhead_ns"] / totals["prologue_overhead_ns"],
        "copies": {n: runs[n]["copies"] for n in runs},
        "startup_ms": start,
        "import_aiter_norm_guard_ms": import_ms(wheel_py),
        "python": sys.version.split()[0],
    }
    md = render(result)
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    (out / "bench.md").write_text(md)
    print(md)
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        "Per-call Python overhead on the safe path (2-D contiguous), ns; overhead = variant - 0.5.10 floor, "
        "timed in the same process (median of rounds)",
        "",
        "| tokens x hidden | floor | guard | 0.5.11 inline fix | 0.5.23 prologue | guard / inline | guard / prologue |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['cell']} | {row['floor_ns']:.0f} | {row['guard_overhead_ns']:.0f} | "
            f"{row['inline_fix_overhead_ns']:.0f} | {row['prologue_overhead_ns']:.0f} | "
            f"{row['guard_vs_inline_fix']:.2f} | {row['guard_vs_prologue']:.2f} |"
        )
    lines += [
        "",
        f"Over the eight safe-path cells: guard / 0.5.11 inline fix = {r['guard_vs_inline_fix_overall']:.2f}, "
        f"guard / 0.5.23 prologue = {r['guard_vs_prologue_overall']:.2f} (target: <= 1.5 and <= 1.0)",
    ]
    names = list(r["copies"])
    lines += [
        "",
        "Copies per call (bytes copied) by layout class, 64 tokens",
        "",
        "| layout | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for layout in r["copies"][names[0]]:
        cells = [f"{r['copies'][n][layout]['copies']} ({r['copies'][n][layout]['copy_bytes']})" for n in names]
        lines.append(f"| {layout} | " + " | ".join(cells) + " |")
    lines += ["", "Interpreter start-up (`python -c pass`, median ms)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in r["startup_ms"].items()]
    lines += [f"- import aiter_norm_guard (-X importtime cumulative, median): {r['import_aiter_norm_guard_ms']:.1f}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
