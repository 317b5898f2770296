#!/usr/bin/env bash
# The release matrix alone: set up every pinned release overlay and the wheel venv, then run the
# per-release test files (scripts/matrix.py MATRIX_FILES) against each release. Prints release x
# case and writes results/matrix.json and results/matrix.md (entry x check x release); exit
# status 1 if any applicable case fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/wheel-venv.sh
.cache/wheel-venv/bin/python -P scripts/matrix.py
