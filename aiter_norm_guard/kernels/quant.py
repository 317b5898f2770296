"""aiter's fused RMSNorm + quant kernels, as their sources read memory (each ``source`` cites it).

Versions as in :mod:`aiter_norm_guard.kernels.norm`; the Triton kernels from the wheel
(0.1.7.post2) and HEAD (``e4048607a5``), where they moved to ``aiter/ops/triton/quant/``.
"""

from __future__ import annotations

from aiter_norm_guard.kernels.form import (
    EMPTY_GRID_SKIPPED,
    N_LAST,
    N_SIZE1,
    OWN,
    PITCH,
    STRIDES,
    Kernel,
    Rows,
    Vector,
)
from aiter_norm_guard.kernels.norm import HIP_RMSNORM

_OUT = Rows(n=N_SIZE1, pitch=PITCH, dtype=OWN)  # the quantized output, written in its own (fp8) dtype

HIP_RMSNORM_QUANT = HIP_RMSNORM._replace(
    name="aiter HIP rmsnorm_quant",
    source="v0.1.17 csrc/kernels/rmsnorm_quant_kernels.cu:420-464 (the rmsnorm kernel with FUSE_QUANT): "
    "n = input.size(1), m = numel / n, stride(0) of input and out, weight reinterpreted as the input's dtype, "
    "per-token scale[row] as float, grid(m) unchecked, n <= 8192",
    rows=(("input", HIP_RMSNORM.row("input")), ("out", _OUT)),
)
HIP_ADD_RMSNORM_QUANT = HIP_RMSNORM_QUANT.with_residual(
    "aiter HIP add_rmsnorm_quant",
    "v0.1.17 csrc/kernels/rmsnorm_quant_kernels.cu:358-401: as rmsnorm_quant; residual_in / residual_out "
    "at their own stride(0), shapes never compared",
)

_TRITON_ROWS = Rows(n=N_LAST, pitch=STRIDES, dtype=OWN)
TRITON_FP8_GROUP_QUANT = Kernel(
    name="aiter Triton fused_rms_fp8_group_quant",
    source="wheel aiter/ops/triton/fused_fp8_quant.py:158-326: M, N1 = inp1.shape; inp2 rows asserted == M; "
    "res1 shape asserted (M, N1); row and column strides of inp1, inp2, res1 passed; kernel "
    "_triton_kernels/fused_fp8_quant.py:201: tl.load(weight1_ptr + n_offs).to(fp32): own dtype, unit stride, "
    "length unchecked; grid (M,)",
    rows=(("inp1", _TRITON_ROWS), ("inp2", _TRITON_ROWS), ("res1", _TRITON_ROWS)),
    vectors=(("inp1_weight", Vector(dtype=OWN)), ("inp2_weight", Vector(dtype=OWN))),
    zero_rows=EMPTY_GRID_SKIPPED,
    dtypes=(),
    rank2=True,
)
_MXFP4_ROWS = Rows(n=N_LAST, pitch=PITCH, dtype=OWN)
TRITON_MXFP4_QUANT = TRITON_FP8_GROUP_QUANT._replace(
    name="aiter Triton fused_rms_mxfp4_quant",
    source="wheel aiter/ops/triton/fused_mxfp4_quant.py:16-130: M, N1 = x1.shape, assert N1 % 2 == 0; only row "
    "strides of x1, x2, res1 passed (columns one apart); no res1 shape or x2 row check; kernel "
    "_triton_kernels/fused_mxfp4_quant.py:139: tl.load(w1_ptr + x_offs_n).to(fp32)",
    rows=(("x1", _MXFP4_ROWS), ("x2", _MXFP4_ROWS), ("res1", _MXFP4_ROWS)),
    vectors=(("x1_weight", Vector(dtype=OWN)), ("x2_weight", Vector(dtype=OWN))),
    same_rows=("x2", "res1"),
)
