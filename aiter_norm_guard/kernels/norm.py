"""aiter's RMSNorm and LayerNorm kernels, as their sources read memory (each ``source`` cites it).

Versions read: the index's amd-aiter wheel (0.1.7.post2 = ROCm/aiter ``0960ef93ac``), tags
v0.1.11 (``c4a3ff2a04``), v0.1.17 (``32214c295e``), v0.1.18 (``d6de77692f``), v0.1.20 and HEAD
(``e4048607a5``).  ``rmsnorm2d_fwd`` / ``rmsnorm2d_fwd_with_add`` (``aiter/ops/rmsnorm.py``)
route by version: <= v0.1.10 always CK; v0.1.11 - v0.1.17 HIP when ``shape[-1] <= 8192``
(any rank), else CK (v0.1.17 ``rmsnorm.py:62-97``); >= v0.1.18 HIP for 2-D bf16/fp16 with
``shape[-1] <= 8192``, else opus (v0.1.18 ``rmsnorm.py:388-463``).  A caller must meet the
strictest: HIP.
"""

from __future__ import annotations

from aiter_norm_guard.kernels.form import (
    EMPTY_GRID_SKIPPED,
    INPUT_PITCH,
    N_LAST,
    N_SIZE1,
    OWN,
    PITCH,
    PITCH_LAST2,
    STRIDES,
    Kernel,
    Rows,
    Vector,
)

_HIP_ROWS = Rows(n=N_SIZE1, pitch=PITCH)
_CK_ROWS = Rows(n=N_LAST, pitch=PITCH)

HIP_RMSNORM = Kernel(
    name="aiter HIP rmsnorm",
    source="v0.1.17 csrc/kernels/rmsnorm_quant_kernels.cu:540-577: n = input.size(1), m = input.numel() / n, "
    "input_stride / out_stride = stride(0) each, grid(m) launched unchecked, weight "
    "reinterpret_cast<DTYPE_I*> (the input's dtype, no length check), n <= 8192 else TORCH_CHECK",
    rows=(("input", _HIP_ROWS), ("out", _HIP_ROWS)),
    vectors=(("weight", Vector()),),
    max_n=8192,
)
HIP_ADD_RMSNORM = HIP_RMSNORM.with_residual(
    "aiter HIP add_rmsnorm",
    "v0.1.17 csrc/kernels/rmsnorm_quant_kernels.cu:484-521: as rmsnorm; residual_in / residual_out read "
    "with their own stride(0) and the input's m and n, shapes never compared",
)
CK_RMSNORM = HIP_RMSNORM._replace(
    name="aiter CK rmsnorm2d",
    source="wheel / v0.1.17 csrc/py_itfs_ck/rmsnorm_ck_kernels.cu:10-58: n = input.size(-1), m = numel / n, "
    "stride(0) of input and out, views (m, n) with strides (stride, 1) (ck_tile rmsnorm2d_fwd_kernel.hpp:192-263), "
    "gamma n elements typed as the input; only the input dtype is checked",
    rows=(("input", _CK_ROWS), ("out", _CK_ROWS)),
    max_n=None,
)
CK_ADD_RMSNORM = CK_RMSNORM.with_residual(
    "aiter CK rmsnorm2d_with_add",
    "wheel / v0.1.17 csrc/py_itfs_ck/rmsnorm_ck_kernels.cu:72-122: as rmsnorm2d, residuals at their own "
    "stride(0), shapes never compared",
)
OPUS_RMSNORM = Kernel(
    name="aiter opus rms_norm",
    source="v0.1.18 aiter/ops/rmsnorm.py:66-111: asserts weight.dtype == input.dtype, weight contiguous, "
    "weight.shape[-1] == hidden, out contiguous; copies an input that is not 2-D row-strided; reads rows through "
    "stride(-2); csrc/kernels/rmsnorm/rmsnorm_opus_norm_entry.cu:37: rows <= 0 returns before any launch",
    rows=(("input", Rows(n=N_LAST, pitch=STRIDES)), ("out", _CK_ROWS)),
    vectors=(("weight", Vector(checked=("dtype", "length", "contiguous"))),),
    zero_rows=EMPTY_GRID_SKIPPED,
    dtypes=("bfloat16", "float16", "float32"),
)
OPUS_ADD_RMSNORM = OPUS_RMSNORM.with_residual(
    "aiter opus add_rms_norm",
    "v0.1.18 aiter/ops/rmsnorm.py:151-196: copies the input only if stride(-1) != 1 (a >= 3-D input with "
    "non-collapsible rows is read through stride(-2): wrong rows); asserts residual dtypes and contiguity, never "
    "their shape or numel",
    residual=_CK_ROWS,
    input=Rows(n=N_LAST, pitch=PITCH_LAST2),
)
#: Every kernel ``rmsnorm2d_fwd`` / ``rmsnorm2d_fwd_with_add`` may reach, in any aiter version.
RMSNORM2D = (HIP_RMSNORM, HIP_ADD_RMSNORM, CK_RMSNORM, CK_ADD_RMSNORM, OPUS_RMSNORM, OPUS_ADD_RMSNORM)

_TRITON_ROWS = Rows(n=N_LAST, pitch=PITCH, dtype=OWN)
TRITON_RMSNORM = Kernel(
    name="aiter Triton rms_norm (gfx1250)",
    source="HEAD aiter/ops/triton/normalization/rmsnorm.py:39-66: n_rows, n_cols = x.shape, x.stride(0) and "
    "y.stride(0) passed, columns one apart; _triton_kernels/normalization/rmsnorm.py:119-146: g_ptr + cols loaded "
    "in its own dtype; grid (min(rows, SMs),): none for zero rows",
    rows=(("input", _TRITON_ROWS), ("out", _TRITON_ROWS)),
    vectors=(("weight", Vector(dtype=OWN)),),
    zero_rows=EMPTY_GRID_SKIPPED,
    rank2=True,
)
TRITON_ADD_RMSNORM = TRITON_RMSNORM.with_residual(
    "aiter Triton rmsnorm2d_fwd_with_add (gfx1250)",
    "HEAD aiter/ops/triton/normalization/rmsnorm.py:69-101: only x.stride(0) and out.stride(0) passed; "
    "_triton_kernels/normalization/rmsnorm.py:439-440: residual_in / residual_out indexed with the input's pitch",
    residual=Rows(n=N_LAST, pitch=INPUT_PITCH, dtype=OWN),
)

TRITON_ADD_RMSNORM_PAD = Kernel(
    name="aiter Triton fused_add_rmsnorm_pad",
    source="HEAD aiter/ops/triton/normalization/fused_add_rmsnorm_pad.py:9-55: M, N = x.shape, res shape "
    "asserted (M, N), both strides of x and res passed (tl.assume(stride > 0)); kernel: tl.load(weight_ptr + n_offs) "
    "N elements, own dtype to fp32; grid (M,) (Triton's launcher skips an empty grid)",
    rows=(("x", Rows(n=N_LAST, pitch=STRIDES, dtype=OWN)), ("res", Rows(n=N_LAST, pitch=STRIDES, dtype=OWN))),
    vectors=(("weight", Vector(dtype=OWN)),),
    zero_rows=EMPTY_GRID_SKIPPED,
    rank2=True,
)

CK_LAYERNORM = Kernel(
    name="aiter CK layernorm2d",
    source="wheel / v0.1.17 csrc/py_itfs_ck/norm_kernels.cu:11-54: n = input.size(-1), m = numel / n, stride(0) of "
    "input and out; gamma and beta n elements typed as the input (02_layernorm2d/layernorm2d_fwd.hpp:20-44), "
    "lengths never checked (dtypes checked only from v0.1.20, 7a56d74625)",
    rows=(("input", _CK_ROWS), ("out", _CK_ROWS)),
    vectors=(("weight", Vector()), ("bias", Vector())),
)
