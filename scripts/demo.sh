#!/usr/bin/env bash
# The main job: set up, then run `aiter-norm-guard selftest` on sglang 0.5.10's real norm modules
# (RMSNorm and GemmaRMSNorm, the entries 0.5.10 sends to aiter). On this CPU machine the aiter
# kernels are the memory-faithful double (labelled EMULATED): the bug report's Q/K views, zero
# rows, rank-3 inputs fault without the guard, and every case matches forward_native with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh 0.5.10   # the base venv and the one overlay the selftest runs on (not every release's)
bash scripts/wheel-venv.sh
PYTHONPATH=.envs/sglang-0.5.10 .cache/wheel-venv/bin/python -P -W ignore -m aiter_norm_guard selftest "$@"
