#!/usr/bin/env bash
# GPU tests and timings through real sglang releases, on a CUDA machine with torch, triton, wrapt,
# transformers and pytest (no registry needed). Build what it carries first, here:
#   .venv/bin/python scripts/gpu_bundle.py      # .gpu/: trimmed sglang 0.5.10 + 0.5.15, the rest as wheels
#   bash scripts/gpu-test.sh                    # there; logs, memcheck output and timings to $OUT or results/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}; mkdir -p "$OUT"; export OUT PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
BASE="/tmp/site:$PWD/.gpu/common:$PWD:$PWD/tests/gpu"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' | tee -a "$OUT/gpu.txt"
rc=0
for R in ${GPU_RELEASES:-0.5.10 0.5.15}; do
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
echo "== timings (sglang 0.5.15)"
PYTHONPATH="/tmp/site-0.5.15:$PWD/.gpu/sglang-0.5.15:$BASE" python3 -P benchmarks/gpu_bench.py 2>&1 | tail -25 || rc=1
exit "$rc"
