#!/usr/bin/env bash
# The benchmark command (not a test): set up, build the wheel venv, run benchmarks/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/wheel-venv.sh
.cache/wheel-venv/bin/python -P benchmarks/run.py
