"""sglang's all-reduce fused with RMSNorm on aiter's custom all-reduce (``GroupCoordinator``, 0.5.10+).

``GroupCoordinator.fused_allreduce_rmsnorm`` returns None when the fusion cannot run, and every
caller then all-reduces and calls the norm module's own forward (the guarded RMSNorm): so
anything outside the kernel's contract declines the same way, never copies.  The decision
reads shapes, dtypes, layout and device only: the same on every rank of the group.
"""

from __future__ import annotations

from aiter_norm_guard.kernels.allreduce import AR_RMSNORM
from aiter_norm_guard.targets.declaration import Fallback, Feed, Group, Param, Target

PARALLEL_STATE = "sglang.srt.distributed.parallel_state"
_FEED = Feed(groups=(Group("input_", (Param("weight_"),)),), rows=("residual_inp_",), refit=False)

FUSED_ALLREDUCE_RMSNORM = Target(
    name="GroupCoordinator.fused_allreduce_rmsnorm",
    module=PARALLEL_STATE,
    attribute="GroupCoordinator.fused_allreduce_rmsnorm",
    feed=_FEED,
    kernels=(AR_RMSNORM,),
    fallback=Fallback.DECLINE,
    aiter_calls=("custom_fused_ar_rms", "fused_ar_rms"),
)
FUSED_ALLREDUCE_RMSNORM_QUANT = FUSED_ALLREDUCE_RMSNORM._replace(  # 0.5.17+, gfx95: fp8 per-group out
    name="GroupCoordinator.fused_allreduce_rmsnorm_quant_per_group",
    attribute="GroupCoordinator.fused_allreduce_rmsnorm_quant_per_group",
    aiter_calls=("custom_fused_ar_rms_per_group_quant", "fused_ar_rms_per_group_quant"),
)

TARGETS = (FUSED_ALLREDUCE_RMSNORM, FUSED_ALLREDUCE_RMSNORM_QUANT)
