"""MLA attention's fused q / k RMSNorm (``fused_qk_rmsnorm_bf16``, 0.5.11+: every MLA model with aiter).

A module global of sglang's MLA forward methods, bound under ``if _use_aiter`` to aiter's
``fused_qk_rmsnorm`` or to sglang's wrapper of aiter's unified entry (0.5.12+); the forward
method looks it up at each call, so replacing the global guards every layer.  Its inputs are
column slices of the packed latent (row pitch 2112 for DeepSeek-V3): rows through stride(0),
which the kernel reads.  Outside the contract: sglang's native RMSNorm arithmetic on the given
weights and epsilons.
"""

from __future__ import annotations

from aiter_norm_guard.kernels.attention import FUSED_QK_RMSNORM
from aiter_norm_guard.targets.declaration import Fallback, Feed, Group, Param, Target

_METHODS = "sglang.srt.models.deepseek_common.attention_forward_methods"

MLA_QK_RMSNORM = Target(
    name="forward_mla.fused_qk_rmsnorm_bf16",
    module=f"{_METHODS}.forward_mla",
    attribute="fused_qk_rmsnorm_bf16",
    feed=Feed(groups=(Group("q", (Param("q_weight"),)), Group("k", (Param("k_weight"),)))),
    kernels=(FUSED_QK_RMSNORM,),
    fallback=Fallback.QK_RMSNORM_NATIVE,
    aiter_calls=("_aiter_fused_qk_rmsnorm_unified",),
    binding=True,
)
MLA_ROCM_QK_RMSNORM = MLA_QK_RMSNORM._replace(  # the ROCm forward methods moved to their own file in 0.5.18
    name="forward_mla_rocm.fused_qk_rmsnorm_bf16",
    module=f"{_METHODS}.forward_mla_rocm",
)

TARGETS = (MLA_QK_RMSNORM, MLA_ROCM_QK_RMSNORM)
