#!/usr/bin/env bash
# Build the test environments, idempotently:
#   .venv/                 base venv: torch, torchvision, wrapt, test tools (requirements/base.txt)
#   .envs/sglang-X/        one thin overlay per release: sglang==X --no-deps plus exactly what its
#                          layernorm module needs on CPU (requirements/sglang-X.txt), used via PYTHONPATH
# RELEASES="0.5.10 ..." limits the overlays built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RELEASES=${RELEASES:-"0.4.6 0.4.10 0.5.10 0.5.11 0.5.13 0.5.15 0.5.16 0.5.19 0.5.21 0.5.23"}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; return "${PIPESTATUS[0]}"; }

if ! cmp -s requirements/base.txt .venv/.installed 2>/dev/null; then
  echo "setup: base venv (.venv) from requirements/base.txt"
  rm -rf .venv
  "$PY" -m venv .venv
  quiet .venv/bin/pip install -q -r requirements/base.txt
  cp requirements/base.txt .venv/.installed
fi
overlay() {  # one release's overlay; runs in the background, several at once (downloads dominate)
  local v=$1 dir=.envs/sglang-$1
  rm -rf "$dir"
  quiet .venv/bin/pip install -q --no-deps --target "$dir" -r "requirements/sglang-$v.txt" > "$dir.log" 2>&1 \
    && cp "requirements/sglang-$v.txt" "$dir/.installed" && rm -f "$dir.log"
}
mkdir -p .envs
pids=()
for v in $RELEASES; do
  if ! cmp -s "requirements/sglang-$v.txt" ".envs/sglang-$v/.installed" 2>/dev/null; then
    echo "setup: sglang $v overlay (.envs/sglang-$v)"
    overlay "$v" & pids+=($!)
  fi
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for v in $RELEASES; do
  [ -f ".envs/sglang-$v/.installed" ] || { echo "setup: sglang $v overlay failed:"; cat ".envs/sglang-$v.log" 2>/dev/null; failed=1; }
done
exit "$failed"
