#!/usr/bin/env bash
# GPU tests and timings through real sglang releases, on a CUDA machine with torch, triton, wrapt,
# transformers and pytest (no registry needed). Build what it carries first, here:
#   GPU_RELEASES="0.5.10 0.5.23" GPU_OWN_TRANSFORMERS= .venv/bin/python scripts/gpu_bundle.py   # .gpu/
#   bash scripts/gpu-test.sh                    # there; logs, memcheck output and timings to $OUT or results/gpu
# GPU_RELEASES (default: every pinned release, requirements/sglang-X.txt, that .gpu/ carries) picks the releases.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_RELEASES=${GPU_RELEASES:-$(for R in $(bash scripts/releases.sh); do [ -d ".gpu/sglang-$R" ] && echo "$R"; done)}
[ -n "$GPU_RELEASES" ] || { echo "gpu-test: .gpu/ carries no pinned sglang release (run scripts/gpu_bundle.py)" >&2; exit 1; }
OUT=${OUT:-results/gpu}; mkdir -p "$OUT"; export OUT PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
BASE="/tmp/site:$PWD/.gpu/common:$PWD:$PWD/tests/gpu"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' | tee -a "$OUT/gpu.txt"
rc=0
for R in $GPU_RELEASES; do
  echo "== sglang $R"
  own=""
  if [ -d ".gpu/wheels-$R" ]; then  # this release's own transformers pin
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "/tmp/site-$R" .gpu/wheels-$R/*.whl
    own="/tmp/site-$R:"
  fi
  PYTHONPATH="$own$PWD/.gpu/sglang-$R:$BASE" python3 -P -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rA -s \
    2>&1 | tee "$OUT/gpu-tests-$R.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
done
[ "${GPU_BENCH:-1}" = 1 ] || exit "$rc"
rm -f "$OUT/gpu_bench.md"
for R in $GPU_RELEASES; do
  echo "== host time per call, sglang $R"
  PYTHONPATH="/tmp/site-$R:$PWD/.gpu/sglang-$R:$BASE" python3 -P benchmarks/gpu_bench.py 2>&1 | tail -16 || rc=1
done
[ "${GPU_SELFTEST:-1}" = 1 ] || exit "$rc"
R=${GPU_SELFTEST_RELEASE:-0.5.10}
echo "== aiter-norm-guard selftest --device (the CLI; sglang $R, the ROCm look-alike and Triton doubles as aiter)"
LOOK="$PWD/.gpu/sglang-$R:$BASE:$PWD/tests/gpu/lookalike"
AITER_NORM_GUARD_GPU_LOOKALIKE=1 PYTHONPATH="$LOOK" python3 -m aiter_norm_guard selftest --device --tokens 2048 \
  2>&1 | tee "$OUT/selftest-device.txt" || rc=1
AITER_NORM_GUARD_GPU_LOOKALIKE=1 PYTHONPATH="$LOOK" python3 -m aiter_norm_guard selftest --device --json \
  > "$OUT/selftest-device.json" 2>/dev/null || rc=1
exit "$rc"
