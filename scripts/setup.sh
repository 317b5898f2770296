#!/usr/bin/env bash
# Build the test environments, idempotently:
#   .venv/                 base venv: torch, torchvision, wrapt, test tools (requirements/base.txt)
#   .envs/sglang-X/        one thin overlay per release: sglang==X --no-deps plus exactly what its
#                          layernorm module needs on CPU (requirements/sglang-X.txt), used via PYTHONPATH
# The pinned releases are the files requirements/sglang-X.txt (adding one = adding its file).
#   bash scripts/setup.sh                 # the base venv and every pinned release's overlay
#   bash scripts/setup.sh 0.5.10 0.5.23   # the base venv and only these overlays (RELEASES="..." the same)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pinned=$(bash scripts/releases.sh)
RELEASES=${*:-${RELEASES:-$pinned}}
for v in $RELEASES; do
  [ -f "requirements/sglang-$v.txt" ] || { echo "setup: sglang $v is not pinned (no requirements/sglang-$v.txt); pinned: $(echo $pinned)" >&2; exit 2; }
done
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; return "${PIPESTATUS[0]}"; }

base() {  # the base venv
  rm -rf .venv
  "$PY" -m venv .venv && quiet .venv/bin/pip install -q -r requirements/base.txt && cp requirements/base.txt .venv/.installed
}
overlay() {  # one release's overlay; runs in the background, several at once (downloads dominate)
  local v=$1 dir=.envs/sglang-$1
  rm -rf "$dir"
  quiet "${pip[@]}" install -q --no-deps --target "$dir" -r "requirements/sglang-$v.txt" > "$dir.log" 2>&1 \
    && cp "requirements/sglang-$v.txt" "$dir/.installed" && rm -f "$dir.log"
}
pip=(.venv/bin/pip) base_pid=
if ! cmp -s requirements/base.txt .venv/.installed 2>/dev/null; then
  echo "setup: base venv (.venv) from requirements/base.txt"
  if "$PY" -m pip --version > /dev/null 2>&1; then  # an overlay needs only a pip of the same Python: no waiting
    pip=("$PY" -m pip)
    base & base_pid=$!
  else
    base
  fi
fi
mkdir -p .envs
pids=()
for v in $RELEASES; do
  if ! cmp -s "requirements/sglang-$v.txt" ".envs/sglang-$v/.installed" 2>/dev/null; then
    echo "setup: sglang $v overlay (.envs/sglang-$v)"
    overlay "$v" & pids+=($!)
  fi
done
failed=0
[ -z "$base_pid" ] || wait "$base_pid" || { echo "setup: the base venv failed"; failed=1; }
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for v in $RELEASES; do
  [ -f ".envs/sglang-$v/.installed" ] || { echo "setup: sglang $v overlay failed:"; cat ".envs/sglang-$v.log" 2>/dev/null; failed=1; }
done
exit "$failed"
