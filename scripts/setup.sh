#!/usr/bin/env bash
# Build the test environments, idempotently:
#   .venv/                 base venv: torch, torchvision, wrapt, test tools (requirements/base.txt)
#   .envs/sglang-X/        one thin overlay per release: sglang==X --no-deps plus exactly what its
#                          layernorm module needs on CPU (requirements/sglang-X.txt), used via PYTHONPATH
# RELEASES="0.5.10 ..." limits the overlays built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RELEASES=${RELEASES:-"0.4.6 0.4.10 0.5.10 0.5.11 0.5.16 0.5.23"}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; return "${PIPESTATUS[0]}"; }

if ! cmp -s requirements/base.txt .venv/.installed 2>/dev/null; then
  echo "setup: base venv (.venv) from requirements/base.txt"
  rm -rf .venv
  "$PY" -m venv .venv
  quiet .venv/bin/pip install -q -r requirements/base.txt
  cp requirements/base.txt .venv/.installed
fi
for v in $RELEASES; do
  dir=.envs/sglang-$v
  if ! cmp -s "requirements/sglang-$v.txt" "$dir/.installed" 2>/dev/null; then
    echo "setup: sglang $v overlay ($dir)"
    rm -rf "$dir"
    quiet .venv/bin/pip install -q --no-deps --target "$dir" -r "requirements/sglang-$v.txt"
    cp "requirements/sglang-$v.txt" "$dir/.installed"
  fi
done
