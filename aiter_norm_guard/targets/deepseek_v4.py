"""DeepSeek-V4's two-pool fp8 qk-norm store: aiter's ``fused_qk_norm_rope_group_quant`` (sglang 0.5.20+).

sglang binds aiter's function as a module global of ``sglang.kernels.ops.attention.fused_qk_norm_rope_store``
(``from aiter.ops.fused_qk_norm_rope_cache_quant import fused_qk_norm_rope_group_quant`` at :31, ``None``
where aiter lacks it, :35) and calls it from ``_fp8_2buff_store`` (:423), the ``fp8_2buff`` branch of
``fused_qk_norm_rope_swa_store`` that ``DeepseekV4Attention._forward_prepare`` takes on gfx95 with the fp8
unified KV.  The binding is the entry: present (aiter's own function) means selected.  There is no exact
fallback (only this kernel writes the fp8 two-pool layout), so the guard answers exactly where there is an
answer and raises where aiter would misread (:mod:`aiter_norm_guard.guard.group_quant_store`).
"""

from __future__ import annotations

from aiter_norm_guard.kernels.group_quant_store import FUSED_QK_NORM_ROPE_GROUP_QUANT
from aiter_norm_guard.targets.declaration import Feed, Group, Param, Target

GROUP_QUANT_STORE = Target(
    name="fused_qk_norm_rope_store.fused_qk_norm_rope_group_quant",
    module="sglang.kernels.ops.attention.fused_qk_norm_rope_store",
    attribute="fused_qk_norm_rope_group_quant",
    feed=Feed(groups=(Group("q", (Param("k_weight"),)),)),
    kernels=(),
    fallback=None,  # no exact one: the guard raises where aiter would misread
    binding=True,
    group_quant=FUSED_QK_NORM_ROPE_GROUP_QUANT,
)

TARGETS = (GROUP_QUANT_STORE,)
