#!/usr/bin/env bash
# The test command. On a fresh machine it does all set-up, then:
#   1. builds the wheel and installs it into a fresh virtualenv (.cache/wheel-venv) whose only
#      own package is aiter-norm-guard; torch, pytest etc. come from the shared base (.venv)
#   2. runs the suite against sglang 0.5.10 (the last release with no upstream guard), all but the
#      per-release files (scripts/matrix.py MATRIX_FILES)
#   3. runs the release matrix: those files against every pinned release, 0.5.10 included
# Exit status is non-zero if anything fails (or if no test ran).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/wheel-venv.sh
PY=.cache/wheel-venv/bin/python
echo "== lint and format"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== tests (sglang 0.5.10, package from the built wheel)"
rc=0
ignore=$("$PY" -P -c 'import runpy; print(" ".join(f"--ignore=tests/{f}" for f in runpy.run_path("scripts/matrix.py")["MATRIX_FILES"]))')
# shellcheck disable=SC2086
AITER_NORM_GUARD_EXPECT_WHEEL=1 PYTHONPATH=.envs/sglang-0.5.10 "$PY" -P -m pytest -q -p no:cacheprovider tests $ignore "$@" || rc=$?
[ "$rc" -eq 5 ] && { echo "no tests ran"; exit 1; }
[ "$rc" -ne 0 ] && exit "$rc"
echo "== release matrix"
"$PY" -P scripts/matrix.py
