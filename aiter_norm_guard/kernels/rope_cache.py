"""aiter's fused q / k RMSNorm + RoPE + KV-cache write (Qwen3's decode), as its sources read memory.

Versions: v0.1.11 (``c4a3ff2a04``), v0.1.17 / v0.1.18, v0.1.20 (``fc2e5d57fb``, 2026-08-18), ROCm/aiter
#4312 (``97f5bf71ac``, 2026-07-29: the 1-D kernel reads the cache's strides), #4531 (``b0cc5392dd``,
2026-08-21: the mrope kernel does), HEAD ``e4048607a5``.  Kernel: ``csrc/kernels/rope/rope_common.h``
(HEAD) ``fused_mrope_rms_kv_kernel`` :7806-8144, its launcher :8146-8190 (mrope) and :8341 (1-D).
"""

from __future__ import annotations

from aiter_norm_guard.kernels.form import SLOT_HEAD_CONTIGUOUS, SLOT_HEAD_STRIDES, CacheRead, CacheWrite

_KERNEL = (
    "rope_common.h:7888 qkv row (token * (Hq + Hk + Hv) + head) * D, no stride; :7894 weights loaded as T "
    "(vec_t<T>) at access_id: D elements of the activation's dtype, length and dtype never checked; "
    ":7922 cos_sin[pos * rotary_dim + i]; :8046 slot < 0 skipped; :8060 block_size 0: "
    "offset = slot * tok_stride + head * head_stride + i (tok_stride = stride(1), head_stride = stride(2) where "
    "given, else Hk * D and D); :8203 grid (T * (Hq + Hk + Hv) / 4): T == 0 launches an empty grid; :8186 / "
    ":8341 AITER_CHECK head_size in {64, 128, 256}"
)

FUSED_QK_NORM_MROPE_CACHE = CacheWrite(
    name="aiter fused_qk_norm_mrope_3d_cache_pts_quant_shuffle",
    source="HEAD csrc/kernels/fused_qk_norm_mrope_cache_quant.cu:6-70: AITER_CHECK mrope_section.size() == 3, "
    "qkv / qw / kw / cos_sin contiguous, slot_mapping contiguous, unit last stride of the caches, "
    "positions.dim() == 2 (positions_stride 0 and 1 honoured); the scales dereferenced on the host "
    "(*reinterpret_cast<float*>(data_ptr())); fp16 / bf16 activations only; " + _KERNEL,
    positions_rank=2,
    head_sizes=(64, 128, 256),
    cache_reads=(
        CacheRead(
            "v0.1.11 - v0.1.20",
            SLOT_HEAD_CONTIGUOUS,
            "v0.1.20 fused_qk_norm_mrope_cache_quant.cu: AITER_CHECK k_cache / v_cache contiguous, no "
            "stride passed; kernel offset slot * Hk * D + head * D",
        ),
        CacheRead(
            "#4531 (2026-08-21) - HEAD",
            SLOT_HEAD_STRIDES,
            "HEAD fused_qk_norm_mrope_cache_quant.cu:53-58: k_cache.stride(0 / 1 / 2) passed as block / "
            "token / head strides",
        ),
    ),
)

FUSED_QK_NORM_ROPE_CACHE = CacheWrite(
    name="aiter fused_qk_norm_rope_cache_pts_quant_shuffle",
    source="HEAD csrc/kernels/fused_qk_norm_rope_cache_quant.cu:3245-3330: positions.dim() == 1; "
    "k_cache.stride(0 / 1 / 2) as block / token / head strides; the scales read on the host; "
    "VLLM_DISPATCH_FLOATING_TYPES; " + _KERNEL,
    positions_rank=1,
    head_sizes=(64, 128, 256),
    dtypes=("float32", "bfloat16", "float16"),  # VLLM_DISPATCH_FLOATING_TYPES (aiter_dispatch.h:169-172)
    cache_reads=(
        CacheRead("v0.1.11", SLOT_HEAD_CONTIGUOUS, "v0.1.11: k_cache contiguous (AITER_CHECK), (slot * Hk + head) * D"),
        CacheRead(
            "v0.1.17 - before #4312",
            SLOT_HEAD_CONTIGUOUS,
            "v0.1.17 / v0.1.18: is_contiguous_from_dim1, only the block stride read (unused at block_size 0)",
        ),
        CacheRead(
            "#4312 (2026-07-29) - HEAD",
            SLOT_HEAD_STRIDES,
            "HEAD .cu:3245-3330: stride(0 / 1 / 2) as block / token / head strides",
        ),
    ),
)
