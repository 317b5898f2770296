"""aiter's fused RMSNorm + quant kernels, as their sources read memory (see ``source``)."""

from __future__ import annotations

from aiter_kernel_contracts.form import (
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

_HIP_ROWS = Rows(n=N_SIZE1, pitch=PITCH)
_OUT = Rows(n=N_SIZE1, pitch=PITCH, dtype=OWN)  # the quantized output, written in its own (fp8) dtype

HIP_RMSNORM_QUANT = Kernel(
    name="aiter HIP rmsnorm_quant",
    source="TODO",
    rows=(("input", _HIP_ROWS), ("out", _OUT)),
    vectors=(("weight", Vector()),),
    max_n=8192,
)
HIP_ADD_RMSNORM_QUANT = HIP_RMSNORM_QUANT._replace(
    name="aiter HIP add_rmsnorm_quant",
    rows=(("input", _HIP_ROWS), ("residual_in", _HIP_ROWS), ("residual_out", _HIP_ROWS), ("out", _OUT)),
    same_rows=("residual_in", "residual_out"),
)

_TRITON_ROWS = Rows(n=N_LAST, pitch=STRIDES, dtype=OWN)
TRITON_FP8_GROUP_QUANT = Kernel(
    name="aiter Triton fused_rms_fp8_group_quant",
    source="TODO",
    rows=(("inp1", _TRITON_ROWS), ("inp2", _TRITON_ROWS), ("res1", _TRITON_ROWS)),
    vectors=(("inp1_weight", Vector(dtype=OWN)), ("inp2_weight", Vector(dtype=OWN))),
    zero_rows=EMPTY_GRID_SKIPPED,
    rank2=True,
)
TRITON_MXFP4_QUANT = Kernel(
    name="aiter Triton fused_rms_mxfp4_quant",
    source="TODO",
    rows=(("x1", Rows(n=N_LAST, pitch=PITCH, dtype=OWN)), ("x2", Rows(n=N_LAST, pitch=PITCH, dtype=OWN)),
          ("res1", Rows(n=N_LAST, pitch=PITCH, dtype=OWN))),
    vectors=(("x1_weight", Vector(dtype=OWN)), ("x2_weight", Vector(dtype=OWN))),
    zero_rows=EMPTY_GRID_SKIPPED,
    same_rows=("res1",),
    rank2=True,
)
