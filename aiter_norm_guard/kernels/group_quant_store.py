"""aiter's DeepSeek-V4 fused q / k RMSNorm + RoPE + fp8 group-quant store (the two-pool fp8 KV), as its sources
read memory.

aiter HEAD ``e4048607a5``.  Python wrapper ``aiter/ops/fused_qk_norm_rope_cache_quant.py``
``fused_qk_norm_rope_group_quant`` :358-505; host code ``csrc/kernels/fused_qk_norm_rope_cache_quant.cu``
``aiter::fused_qk_norm_rope_group_quant`` :5635-6009; launch macros :5581-5631; kernels: the coarse
``fuse_qk_norm_rope_group_quant_cache_kernel_impl`` (:4733-, its K wave the shared
``k_wave_norm_rope_group_quant_impl`` :4417-) and the fine-grained ``fuse_qk_norm_rope_finegrained_impl``
(:5120-), which the decode tier always takes (:5943-5947).
"""

from __future__ import annotations

from aiter_norm_guard.kernels.form import EMPTY_GRID_FAULTS, GroupQuantStore, Vector

_CU = "fused_qk_norm_rope_cache_quant.cu"

#: Where each guarded misread is proven (the guard's ValueError messages quote these).
K_WEIGHT_DTYPE = (
    f"{_CU}:5588 / :5615 reinterpret_cast<const KV_T*>(k_weight.data_ptr()), KV_T dispatched on kv.dtype() "
    "(:5963 / :5969 / :5975); the host checks only k_weight.size(0) (:5672), while q_weight's dtype is "
    "checked (:5679)"
)
Q_DTYPE = f"{_CU}:5585 reinterpret_cast<const KV_T*>(q.data_ptr()), KV_T from kv.dtype() (:5963); never compared"
K_WEIGHT_STRIDE = (
    f"{_CU}:5214 (fine-grained) / :4524-4526 (coarse): head_dim elements one apart from the pointer; no stride "
    "of k_weight is passed (:5713-5729)"
)
KV_ROWS = (
    f"{_CU}:5664 T = q.size(0) (params.num_tokens :5773); kv row token_idx * kv.stride(0) at :5202-5204 "
    "(fine-grained) / :4492-4494 (coarse) for every token_idx < T (:5181 / :4802); kv.size(0) is never read"
)
POSITIONS = (
    f"{_CU}:5594 reinterpret_cast<const int64_t*>(positions.data_ptr()), read as positions[token_idx] for "
    "token_idx < T at :5191 / :4813 (and :5228 / :4837 for the SWA row); no check of positions at all"
)
ZERO_TOKENS = (
    f"{_CU}:5961 / :5967 grid (1 + H, T) / (T, 1 + waves): T == 0 launches an empty grid (the decode tier, "
    ":5883, takes T == 0)"
)

FUSED_QK_NORM_ROPE_GROUP_QUANT = GroupQuantStore(
    name="aiter fused_qk_norm_rope_group_quant",
    source=(
        "HEAD aiter/ops/fused_qk_norm_rope_cache_quant.py:430 assert q.dim() == 3; :440-454 fp8 Q: group size in "
        "{32, 64} dividing head_dim - rot_dim; :455-480 allocates the buffers passed as None; :505 returns them. "
        f"{_CU}:5669-5673 AITER_CHECK q 3-D, q.size(-1) == kv.size(-1), q_nope_scale_buff.size(2) == head_dim, "
        "k_weight.size(0) == head_dim, kv.stride(-1) == 1; :5677-5682 q_weight: length, dtype == q's, unit last "
        "stride; :5692-5704 fp8 Q: group size, q_rope_buff given; :5708-5711 one kv head; :5736-5746 "
        "k_nope_scale_buff fp32 / fp16 / bf16 / fp8; :5786-5839 SWA: one index mode, dtypes, 2-D, equal rows, unit "
        "last strides, dest_row / batch_id int32 of >= T; :5901-5907 rot_dim == 64 and head_dim == 512; only "
        "stride(0) / stride(1) of q, kv and the outputs are passed (:5713-5729); kernel :4391 an SWA row >= "
        "swa_num_rows is skipped, :5191-5194 the position clamped into cos / sin's rows"
    ),
    tokens="q.size(0)",
    element_type="kv",
    token_rows=("kv", "positions"),
    vectors=(
        ("k_weight", Vector(checked=("length",))),
        ("q_weight", Vector(checked=("length", "dtype", "contiguous"))),
    ),
    head_dims=(512,),
    rot_dim=64,
    returns=("q_nope_scale_buff", "q_rope_buff", "k_nope_scale_buff", "k_rope_buff"),
    misreads=(
        ("k_weight dtype", K_WEIGHT_DTYPE),
        ("q dtype", Q_DTYPE),
        ("k_weight stride", K_WEIGHT_STRIDE),
        ("kv rows", KV_ROWS),
        ("positions", POSITIONS),
        ("zero tokens", ZERO_TOKENS),
    ),
    zero_rows=EMPTY_GRID_FAULTS,
)
