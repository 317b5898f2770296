"""sglang's layer-boundary fused RMSNorm + quant entries that call aiter."""

from __future__ import annotations

from aiter_kernel_contracts import quant
from aiter_norm_guard.targets import Feed, Route, Target

COMMUNICATOR_QUANT = Target(
    name="communicator._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.communicator",
    attribute="_fused_rmsnorm_fp8_per_token_quant",
    feed=Feed(x="hidden_states", rows=("residual",), vectors=("weight",), keep_rank=True),
    kernels=(quant.HIP_RMSNORM_QUANT, quant.HIP_ADD_RMSNORM_QUANT),
    fallback="aiter_norm_guard.targets.fallbacks:fp8_per_token_quant",
    fallback_params=(),
    selected_by=("_use_aiter",),
    aiter_calls=("_aiter_rmsnorm_quant", "_aiter_add_rmsnorm_quant"),
    routes=(Route((quant.TRITON_FP8_GROUP_QUANT,), flag="_is_gfx1250_supported"),),
)

ADD_NORM_QUANT = COMMUNICATOR_QUANT._replace(
    name="add_norm._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.layer_boundary.residual.add_norm",
)

TARGETS = (COMMUNICATOR_QUANT, ADD_NORM_QUANT)
