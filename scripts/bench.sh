#!/usr/bin/env bash
# The benchmark command (not a test): set up, build the wheel venv, run benchmarks/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
# the base venv and only the overlays benchmarks/run.py times (its RELEASES: BENCH_RELEASES or its default)
bash scripts/setup.sh $("${PYTHON:-python3}" -c 'import runpy; print(*runpy.run_path("benchmarks/run.py")["RELEASES"])')
bash scripts/wheel-venv.sh
.cache/wheel-venv/bin/python -P benchmarks/run.py
