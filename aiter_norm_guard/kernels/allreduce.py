"""aiter's custom all-reduce fused with RMSNorm, as its source reads memory (``source`` cites it)."""

from __future__ import annotations

from aiter_norm_guard.kernels.form import FLAT, N_WEIGHT, Kernel, Rows, Vector

_FLAT = Rows(n=N_WEIGHT, pitch=FLAT)

AR_RMSNORM = Kernel(
    name="aiter custom all-reduce + RMSNorm",
    source="wheel csrc/kernels/custom_all_reduce.cu:263-297 and HEAD :520-565: n = w.numel(), m = inp.numel() / n, "
    "the input copied flat (numel * element size bytes from data_ptr, hipMemcpyAsync), residual in / out and out "
    "indexed flat row * n in 16-byte packs, the weight reinterpret_cast to the activation's dtype; the input's width "
    "is compared with n only from v0.1.16 (d380c2c375), rows never; zero rows reach zero-grid launches before "
    "v0.1.18 (dist/device_communicators/custom_all_reduce.py _fits_custom_ar_size); the per-group quant variant "
    "(HEAD :662-733) never compares widths",
    rows=(("inp", _FLAT), ("res_inp", _FLAT), ("res_out", _FLAT), ("out", _FLAT)),
    vectors=(("w", Vector()),),
    same_rows=("res_inp", "res_out"),
)
