#!/usr/bin/env bash
# GPU tests and timings, on a machine with a CUDA GPU, torch, triton and wrapt (no set-up needed
# beyond those; sglang is not required there: the GPU tests use tests/gpu/standin.py).
#   bash scripts/gpu-test.sh        # writes logs, memcheck output and the timing table to $OUT or results/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}; mkdir -p "$OUT"; export OUT
export PYTHONPATH="$PWD:$PWD/tests/gpu${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -P -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rA 2>&1 | tee "$OUT/gpu-tests.log"
rc=${PIPESTATUS[0]}
python3 -P benchmarks/gpu_bench.py 2>&1 | tail -20
exit "$rc"
