"""sglang's layer-boundary fused RMSNorm + quant entries that call aiter."""

from __future__ import annotations

from aiter_norm_guard.kernels import quant
from aiter_norm_guard.targets.declaration import Fallback, Feed, Group, Param, Route, Target

COMMUNICATOR_QUANT = Target(
    name="communicator._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.communicator",
    attribute="_fused_rmsnorm_fp8_per_token_quant",
    feed=Feed(groups=(Group("hidden_states", (Param("weight"),)),), rows=("residual",), keep_rank=True),
    kernels=(quant.HIP_RMSNORM_QUANT, quant.HIP_ADD_RMSNORM_QUANT),
    fallback=Fallback.FP8_PER_TOKEN_QUANT,
    selected_by=(("_use_aiter",),),
    aiter_calls=("_aiter_rmsnorm_quant", "_aiter_add_rmsnorm_quant"),
    routes=(Route((quant.TRITON_FP8_GROUP_QUANT,), flag="_is_gfx1250_supported"),),
)

ADD_NORM_QUANT = COMMUNICATOR_QUANT._replace(
    name="add_norm._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.layer_boundary.residual.add_norm",
)

_TRITON_QUANT_MODULES = {  # where sglang binds aiter's Triton fused (add +) RMSNorm + quant, as a module global
    "communicator": "sglang.srt.layers.communicator",  # 0.5.10 - 0.5.20
    "add_norm": "sglang.srt.layers.layer_boundary.residual.add_norm",  # 0.5.21+
    "forward_mha": "sglang.srt.models.deepseek_common.attention_forward_methods.forward_mha",  # - 0.5.17
    "forward_mha_rocm": "sglang.srt.models.deepseek_common.attention_forward_methods.forward_mha_rocm",  # 0.5.18+
    "forward_mla": "sglang.srt.models.deepseek_common.attention_forward_methods.forward_mla",  # - 0.5.17
    "forward_mla_rocm": "sglang.srt.models.deepseek_common.attention_forward_methods.forward_mla_rocm",  # 0.5.18+
    "deepseek_v4": "sglang.srt.models.deepseek_v4",  # 0.5.13+
}


def _triton_quant(short: str, module: str, attribute: str, kernel: object, first: str, second: str) -> Target:
    return Target(
        name=f"{short}.{attribute}",
        module=module,
        attribute=attribute,
        feed=Feed(
            groups=(Group(first, (Param(f"{first}_weight"),)), Group(second, (Param(f"{second}_weight"),))),
            rows=("res1",),
        ),
        kernels=(kernel,),  # type: ignore[arg-type]
        fallback=Fallback.QUANT_REFUSAL,
        binding=True,
    )


TRITON_QUANT = tuple(
    _triton_quant(short, module, attribute, kernel, first, second)
    for short, module in _TRITON_QUANT_MODULES.items()
    for attribute, kernel, first, second in (
        ("fused_rms_fp8_group_quant", quant.TRITON_FP8_GROUP_QUANT, "inp1", "inp2"),
        ("fused_rms_mxfp4_quant", quant.TRITON_MXFP4_QUANT, "x1", "x2"),
    )
    if not (short == "deepseek_v4" and attribute == "fused_rms_mxfp4_quant")  # V4 binds the fp8 one only
)

TARGETS = (COMMUNICATOR_QUANT, ADD_NORM_QUANT, *TRITON_QUANT)
