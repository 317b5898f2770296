"""Every aiter normalization call site in released sglang, as data: guarded here, or why not.

Read from the released wheels 0.5.10 - 0.5.23 (every ``import aiter`` / ``from aiter...`` and
every call of an aiter norm kernel).  ``guards``: the target table's entries that cover the
site; ``module``: the files (``a|b``) ``doctor`` reads to tell whether the installed sglang has it;
``switch``: what turns the site on.  The README's table is :func:`markdown`'s, and a test
keeps the three (this table, the README, the target table) in agreement.
"""

from __future__ import annotations

from typing import NamedTuple

GUARDED = "guarded"
RELEASE_CHECKS = "checked by sglang itself"
NOT_GUARDED = "not guarded"


class CallSite(NamedTuple):
    site: str
    module: str
    releases: str
    kernel: str
    switch: str
    status: str
    guards: tuple[str, ...] = ()
    why: str = ""


_L = "sglang.srt.layers."
_M = "sglang.srt.models."
_FWD = _M + "deepseek_common.attention_forward_methods."
_QUANTS = tuple(f"{m}.{a}" for m in ("communicator", "add_norm", "forward_mha", "forward_mha_rocm", "forward_mla",
                                       "forward_mla_rocm") for a in ("fused_rms_fp8_group_quant",
                                                                      "fused_rms_mxfp4_quant"))  # fmt: skip

CALL_SITES: tuple[CallSite, ...] = (
    CallSite("RMSNorm.forward_aiter (and its x_pad path)", _L + "layernorm", "0.4.7+",
             "rmsnorm2d_fwd(_with_add); Triton fused_add_rmsnorm_pad; gfx1250: Triton rms_norm",
             "SGLANG_USE_AITER=1", GUARDED, ("RMSNorm.forward_aiter",)),
    CallSite("GemmaRMSNorm.forward_hip, aiter branch", _L + "layernorm", "0.5.10 - 0.5.15",
             "rmsnorm2d_fwd(_with_add) on weight + 1", "SGLANG_USE_AITER=1", GUARDED, ("GemmaRMSNorm.forward_hip",)),
    CallSite("LayerNorm.forward_hip", _L + "layernorm", "0.5.11+", "layernorm2d_fwd", "SGLANG_USE_AITER=1",
             GUARDED, ("LayerNorm.forward_hip",)),
    CallSite("_fused_rmsnorm_fp8_per_token_quant", f"{_L}communicator|{_L}layer_boundary.residual.add_norm",
             "0.5.11+ (add_norm.py from 0.5.21)",
             "rmsnorm_quant / add_rmsnorm_quant; gfx1250: Triton group quant",
             "fp8 per-token W8A8 (GLM-4-MoE)", GUARDED,
             ("communicator._fused_rmsnorm_fp8_per_token_quant", "add_norm._fused_rmsnorm_fp8_per_token_quant")),
    CallSite("all-reduce + RMSNorm: GroupCoordinator.fused_allreduce_rmsnorm(_quant_per_group)",
             "sglang.srt.distributed.parallel_state", "0.5.10+ (per-group quant 0.5.17+)",
             "custom all-reduce fused_allreduce_rmsnorm", "--enable-aiter-allreduce-fusion, TP > 1 (GLM-5: on by "
             "itself from 0.5.21)", GUARDED,
             ("GroupCoordinator.fused_allreduce_rmsnorm", "GroupCoordinator.fused_allreduce_rmsnorm_quant_per_group")),
    CallSite("MLA fused q / k RMSNorm: fused_qk_rmsnorm_bf16", f"{_FWD}forward_mla|{_FWD}forward_mla_rocm",
             "0.5.11+ (forward_mla_rocm.py from 0.5.18)", "fused_qk_rmsnorm",
             "SGLANG_USE_AITER=1, any MLA model (DeepSeek, Kimi, GLM-4.7-Flash, "
             "GLM-5)", GUARDED, ("forward_mla.fused_qk_rmsnorm_bf16", "forward_mla_rocm.fused_qk_rmsnorm_bf16")),
    CallSite("Triton fused (add +) RMSNorm + quant at the layer boundary and in MLA / MHA prepare",
             "|".join((_L + "communicator", _L + "layer_boundary.residual.add_norm", _FWD + "forward_mla_rocm")),
             "0.5.10+ (add_norm.py from 0.5.21)", "fused_rms_fp8_group_quant, fused_rms_mxfp4_quant",
             "gfx95 with fp8 or mxfp4 weights", GUARDED, _QUANTS),
    CallSite("DeepSeek-V4 _fused_rmsnorm_fp8_quant", _M + "deepseek_v4", "0.5.13+", "fused_rms_fp8_group_quant",
             "DeepSeek-V4 on gfx95 / gfx1250", GUARDED, ("deepseek_v4.fused_rms_fp8_group_quant",)),
    CallSite("diffusion runtime RMSNorm.forward_aiter", "sglang.multimodal_gen.runtime.layers.layernorm", "0.5.12+",
             "rmsnorm2d_fwd(_with_add)", "SGLANG_USE_AITER=1 (diffusion models)", GUARDED,
             ("multimodal_gen RMSNorm.forward_aiter",)),
    CallSite("Qwen3 fused qk-norm + RoPE + KV write", _M + "qwen3", "0.5.10+ (every dense decode from 0.5.23)",
             "fused_qk_norm_(m)rope_..._cache_pts_quant_shuffle", "SGLANG_USE_AITER=1, decode", NOT_GUARDED,
             why="its only exact fallback is the attention layer's own forward (native prepare, then the KV write), "
             "which the guard does not patch; sglang's gate keeps fp32 norm weights away (rl_on_policy_target) and "
             "passes the fresh, contiguous qkv_proj output"),
    CallSite("DSA indexer fused k-LayerNorm writer", _L + "attention.dsa.dsa_indexer", "0.5.21+",
             "indexer_qk_rope_quant_and_cache", "gfx950, on by default", RELEASE_CHECKS,
             why="sglang requires fp32 norm weight and bias (TypeError) and checks the geometry; inactive, it "
             "falls back to the guarded LayerNorm"),
    CallSite("DeepSeek-V4 mHC (hc_pre / hc_post / fused post-pre)", _M + "deepseek_v4", "0.5.13+",
             "mhc_pre, mhc_fused_post_pre", "DeepSeek-V4 on HIP", RELEASE_CHECKS,
             why="returns early on zero rows and checks ranks before the kernel"),
    CallSite("DeepSeek-V4 fp4 indexer k write", "sglang.srt.kernels.ops.attention.dsv4.fp4_indexer_hip", "0.5.20+",
             "rmsnorm_rope_rotate_activation_fp4quant_kvcache", "DeepSeek-V4 on HIP", RELEASE_CHECKS,
             why="returns on zero rows and casts the weight contiguous before the kernel"),
    CallSite("DeepSeek-V4 two-pool fp8 qk-norm store", "sglang.srt.kernels.ops.attention.fused_qk_norm_rope_store",
             "0.5.20+", "fused_qk_norm_rope_group_quant", "gfx95, fp8 two-pool KV", NOT_GUARDED,
             why="aiter's host code for this kernel was not read here, so no contract is claimed; sglang stages q "
             "into a contiguous buffer and passes kv's row stride"),
    CallSite("MiniMax-M3 fused qk-norm", _M + "minimax_m3", "0.5.22+", "fused_qknorm_idxrqknorm",
             "SGLANG_M3_USE_AITER_FUSED_QKNORM", RELEASE_CHECKS,
             why="makes the packed qkv contiguous and checks widths, ranks and dtypes"),
    CallSite("Qwen3-Next fused Gemma qk-norm + RoPE", _M + "qwen3_next", "0.5.23", "fused_attention_qk_norm_rope",
             "gfx95", RELEASE_CHECKS, why="asks aiter's own fused_attention_qk_norm_rope_supported() first"),
    CallSite("Kimi-K3 KDA fused decode", "sglang.srt.kernels.ops.attention.kda_fused_decode_aiter_hip", "0.5.20+",
             "flydsl KDA decode (gated RMSNorm)", "SGLANG_ROCM_K3_KDA_FUSED_BACKEND=aiter", RELEASE_CHECKS,
             why="covered() checks the batch, every shape and dtype and the last strides"),
    CallSite("VAE GroupNorm", "sglang.multimodal_gen.runtime.platforms.rocm", "0.5.10+", "aiter.ops.groupnorm",
             "SGLANG_USE_ROCM_VAE", RELEASE_CHECKS, why="aiter's wrapper makes input, weight and bias contiguous"),
    CallSite("fused-op registry RMSNormOp.forward_aiter", "sglang.kernels.ops.layernorm", "0.5.16 - 0.5.22",
             "rmsnorm2d_fwd(_with_add)", "SGLANG_FORCE_FUSED_OP_BACKEND only", NOT_GUARDED,
             why="no runtime code calls it (and it passes aiter's arguments in the wrong order)"),
)


def guarded_targets() -> set[str]:
    """Every target name a call site lists as its guard."""
    return {name for site in CALL_SITES for name in site.guards}


def markdown() -> str:
    """The call-site table as the README shows it."""
    rows = ["| call site (sglang) | releases | aiter kernel | switched on by | guard |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in CALL_SITES:
        verdict = s.status if s.status == GUARDED else f"{s.status}: {s.why}"
        rows.append(f"| {s.site} | {s.releases} | {s.kernel} | {s.switch} | {verdict} |")
    return "\n".join(rows) + "\n"
