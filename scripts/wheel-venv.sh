#!/usr/bin/env bash
# Build the wheel and install it into a fresh virtualenv, .cache/wheel-venv. The venv reaches the
# shared heavy base (.venv: torch, wrapt, pytest, ...) through a path file, so the only package
# installed in it is aiter-norm-guard itself, exactly as a user's `pip install` would lay it out.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist .cache/wheel-venv
.venv/bin/python -m build --wheel --no-isolation --outdir dist . > .cache-build.log 2>&1 || { cat .cache-build.log; exit 1; }
rm -f .cache-build.log
# The base venv's own interpreter (what setup.sh made it from, $PYTHON or python3): the .pth below points
# the wheel venv at the base's site-packages, which only an interpreter of the same version can use.
"$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv .cache/wheel-venv
base=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fresh=$(.cache/wheel-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$base" > "$fresh/_aiter_norm_guard_base_env.pth"
.cache/wheel-venv/bin/python -m pip install -q --no-deps --disable-pip-version-check dist/*.whl 2>&1 | grep -v "^WARNING: Location" || true
ls "$fresh"/aiter_norm_guard.pth > /dev/null
