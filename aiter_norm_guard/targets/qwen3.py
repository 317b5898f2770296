"""Qwen3's fused decode: q / k RMSNorm + RoPE + KV-cache write in one aiter kernel (sglang 0.5.10+).

Two entries per release.  The method that calls the kernel (``forward_prepare_aiter_fused_mrope``,
0.5.10 - 0.5.22; ``forward_prepare_aiter_fused``, 0.5.23) is judged per call by the kernel's contract,
and where the kernel cannot take the call its fallback is the release's unfused route: its own
``forward_prepare_native`` (q / k norm, RoPE) and the pool's ``set_kv_buffer`` with the layer's scales.
The kernel's module global in ``qwen3`` gets the zero-copy view of the cache that every aiter build
reads right: 0.5.10 - 0.5.22 pass the pool's 3-D ``(slots, Hk, D)`` buffer as it is, which aiter since
#4531 (#4312 for the 1-D kernel) reads as (block, token, head) and writes to the wrong cells; 0.5.23
passes ``unsqueeze(1)`` itself.
"""

from __future__ import annotations

from aiter_norm_guard.kernels.form import CacheWrite
from aiter_norm_guard.kernels.rope_cache import FUSED_QK_NORM_MROPE_CACHE, FUSED_QK_NORM_ROPE_CACHE
from aiter_norm_guard.targets.declaration import Fallback, Feed, Group, Target

_MODULE = "sglang.srt.models.qwen3"
_UNFUSED = Fallback.UNFUSED_CACHE_WRITE

MROPE_PREPARE = Target(  # 0.5.10 - 0.5.22: mrope only, the cache fetched inside
    name="Qwen3Attention.forward_prepare_aiter_fused_mrope",
    module=_MODULE,
    attribute="Qwen3Attention.forward_prepare_aiter_fused_mrope",
    feed=Feed(groups=(Group("hidden_states", ()),)),
    kernels=(),
    fallback=_UNFUSED,
    selected_by=(("_has_fused_qk_norm_mrope",),),
    aiter_calls=("fused_qk_norm_mrope_3d_cache_pts_quant_shuffle",),
    cache_writes=(FUSED_QK_NORM_MROPE_CACHE,),
)
PREPARE = MROPE_PREPARE._replace(  # 0.5.23: 1-D or mrope, the cache handed in
    name="Qwen3Attention.forward_prepare_aiter_fused",
    attribute="Qwen3Attention.forward_prepare_aiter_fused",
    selected_by=(("_has_fused_qk_norm_mrope", "_has_fused_qk_norm_rope"),),
    aiter_calls=("aiter_fused_qk_norm_rope_set_kv",),
    cache_writes=(FUSED_QK_NORM_MROPE_CACHE, FUSED_QK_NORM_ROPE_CACHE),
)


def _binding(attribute: str, contract: CacheWrite) -> Target:
    return Target(
        name=f"qwen3.{attribute}",
        module=_MODULE,
        attribute=attribute,
        feed=Feed(groups=(Group("qkv", ()),)),
        kernels=(),
        fallback=_UNFUSED,
        binding=True,
        cache_writes=(contract,),
        cache_view=("k_cache", "v_cache"),
    )


MROPE_KERNEL = _binding("fused_qk_norm_mrope_3d_cache_pts_quant_shuffle", FUSED_QK_NORM_MROPE_CACHE)
ROPE_KERNEL = _binding("fused_qk_norm_rope_cache_pts_quant_shuffle", FUSED_QK_NORM_ROPE_CACHE)

TARGETS = (MROPE_PREPARE, PREPARE, MROPE_KERNEL, ROPE_KERNEL)
