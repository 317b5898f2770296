"""For `aiter-norm-guard selftest --device` on a CUDA machine: the ROCm look-alike at interpreter start.

With this folder and tests/gpu on PYTHONPATH and ``AITER_NORM_GUARD_GPU_LOOKALIKE=1``, every Python
process (the CLI and its unguarded children) imports sglang's norm modules on their aiter branches
with the Triton doubles as ``aiter`` (tests/gpu/rocm_on_cuda.py), before any user code, as a ROCm
host with aiter would have them.  Nothing here is part of the guard.
"""

import os

if os.environ.get("AITER_NORM_GUARD_GPU_LOOKALIKE") == "1":
    from rocm_on_cuda import load

    load()
