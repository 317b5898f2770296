"""aiter's RMSNorm and LayerNorm kernels, as their sources read memory (see ``source``).

``rmsnorm2d_fwd`` / ``rmsnorm2d_fwd_with_add`` (``aiter/ops/rmsnorm.py``) route by build:
aiter <= v0.1.17 sends every rank to the HIP kernel (``n <= 8192``) or CK; aiter >= v0.1.18
sends only 2-D bf16/fp16 with ``n <= 8192`` to HIP and the rest to "opus", which copies
what it cannot read and asserts on the weight.  A caller must meet the strictest: HIP.
"""

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
_CK_ROWS = Rows(n=N_LAST, pitch=PITCH)
_WEIGHT = Vector()

HIP_RMSNORM = Kernel(
    name="aiter HIP rmsnorm",
    source="TODO",
    rows=(("input", _HIP_ROWS), ("out", _HIP_ROWS)),
    vectors=(("weight", _WEIGHT),),
    max_n=8192,
)
HIP_ADD_RMSNORM = HIP_RMSNORM._replace(
    name="aiter HIP add_rmsnorm",
    rows=(("input", _HIP_ROWS), ("residual_in", _HIP_ROWS), ("residual_out", _HIP_ROWS), ("out", _HIP_ROWS)),
    same_rows=("residual_in", "residual_out"),
)
CK_RMSNORM = Kernel(
    name="aiter CK rmsnorm2d",
    source="TODO",
    rows=(("input", _CK_ROWS), ("out", _CK_ROWS)),
    vectors=(("weight", _WEIGHT),),
)
CK_ADD_RMSNORM = CK_RMSNORM._replace(
    name="aiter CK rmsnorm2d_with_add",
    rows=(("input", _CK_ROWS), ("residual_in", _CK_ROWS), ("residual_out", _CK_ROWS), ("out", _CK_ROWS)),
    same_rows=("residual_in", "residual_out"),
)
OPUS_RMSNORM = Kernel(
    name="aiter opus rms_norm",
    source="TODO",
    rows=(("input", Rows(n=N_LAST, pitch=STRIDES)), ("out", Rows(n=N_LAST, pitch=PITCH))),
    vectors=(("weight", Vector(checked=("dtype", "length", "contiguous"))),),
    dtypes=("bfloat16", "float16", "float32"),
)
OPUS_ADD_RMSNORM = OPUS_RMSNORM._replace(
    name="aiter opus add_rms_norm",
    rows=(("input", Rows(n=N_LAST, pitch=STRIDES)), ("residual_in", Rows(n=N_LAST, pitch=PITCH)),
          ("residual_out", Rows(n=N_LAST, pitch=PITCH)), ("out", Rows(n=N_LAST, pitch=PITCH))),
    same_rows=("residual_in", "residual_out"),
)
#: Every kernel ``rmsnorm2d_fwd`` / ``rmsnorm2d_fwd_with_add`` may reach, on either build.
RMSNORM2D = (HIP_RMSNORM, HIP_ADD_RMSNORM, CK_RMSNORM, CK_ADD_RMSNORM, OPUS_RMSNORM, OPUS_ADD_RMSNORM)

TRITON_RMSNORM = Kernel(
    name="aiter Triton rms_norm (gfx1250)",
    source="TODO",
    rows=(("input", Rows(n=N_LAST, pitch=PITCH)),),
    vectors=(("weight", Vector(dtype=OWN)),),
    zero_rows=EMPTY_GRID_SKIPPED,
    rank2=True,
)
TRITON_ADD_RMSNORM = TRITON_RMSNORM._replace(
    name="aiter Triton rmsnorm2d_fwd_with_add (gfx1250)",
    rows=(("input", Rows(n=N_LAST, pitch=PITCH)), ("residual_in", Rows(n=N_LAST, pitch=PITCH))),
    same_rows=("residual_in",),
)

TRITON_ADD_RMSNORM_PAD = Kernel(
    name="aiter Triton fused_add_rmsnorm_pad",
    source="TODO",
    rows=(("x", Rows(n=N_LAST, pitch=STRIDES, dtype=OWN)), ("res", Rows(n=N_LAST, pitch=STRIDES, dtype=OWN))),
    vectors=(("weight", Vector(dtype=OWN)),),
    zero_rows=EMPTY_GRID_SKIPPED,
    rank2=True,
)

CK_LAYERNORM = Kernel(
    name="aiter CK layernorm2d",
    source="TODO",
    rows=(("input", _CK_ROWS), ("out", _CK_ROWS)),
    vectors=(("weight", _WEIGHT), ("bias", _WEIGHT)),
)
