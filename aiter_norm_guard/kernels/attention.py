"""aiter's fused q / k RMSNorm of MLA attention, as its source reads memory (``source`` cites it)."""

from __future__ import annotations

from aiter_norm_guard.kernels.form import N_SIZE1, PITCH, Kernel, Rows, Vector

FUSED_QK_RMSNORM = Kernel(
    name="aiter fused_qk_rmsnorm",
    source="HEAD csrc/kernels/fused_qk_norm.cu:179-248 (v0.1.12 :175-237): q and k 2-D, weights 1-D, contiguous "
    "and of q's dtype (AITER_CHECK); m = q.size(0) for q and k alike (k's rows never compared), q_n = q.size(1), "
    "k_n = k.size(1), rows through each tensor's stride(0), the last stride never checked, weight lengths never "
    "checked; grid((m + rows - 1) / rows, 2) unchecked; aiter/ops/fused_qk_norm_rope_cache_quant.py:177-200: "
    "m >= 16384 calls HIP rmsnorm on each instead (no dtype or length check there)",
    rows=(
        ("q", Rows(n=N_SIZE1, pitch=PITCH)),
        ("k", Rows(n=N_SIZE1, pitch=PITCH)),
        ("q_out", Rows(n=N_SIZE1, pitch=PITCH)),
        ("k_out", Rows(n=N_SIZE1, pitch=PITCH)),
    ),
    vectors=(("q_weight", Vector()), ("k_weight", Vector())),
    same_rows=("k", "k_out"),
    max_n=8192,
    rank2=True,
)
