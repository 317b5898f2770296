"""The norm layers of ``sglang/srt/layers/layernorm.py`` that hand their tensors to aiter."""

from __future__ import annotations

from aiter_norm_guard.kernels import norm
from aiter_norm_guard.targets.declaration import WEIGHT, Attr, Feed, Group, Native, Route, Target

LAYERNORM = "sglang.srt.layers.layernorm"
_BOUND = ("_forward_method", "_original_forward_method")
#: RMSNorm built with ``x_pad_to_multiple`` (0.5.19+): per call, the release's Triton pad kernel, its
#: output's last dimension zero-padded to that multiple.
_PAD = Route(
    (norm.TRITON_ADD_RMSNORM_PAD,), instance=("_fused_pad_kernel", "x_pad_to_multiple"), pad_to="x_pad_to_multiple"
)

RMSNORM = Target(
    name="RMSNorm.forward_aiter",
    module=LAYERNORM,
    attribute="RMSNorm.forward_aiter",
    feed=Feed(rows=("residual",), summed=("post_residual_addition",)),
    kernels=norm.RMSNORM2D,
    fallback=Native("forward_native", ("x", "residual", "post_residual_addition")),
    selected_by=(("_use_aiter",),),
    aiter_calls=("rms_norm", "fused_add_rms_norm"),
    bound_attrs=_BOUND,
    routes=(Route((norm.TRITON_RMSNORM, norm.TRITON_ADD_RMSNORM), binding="rms_norm"), _PAD),
)

GEMMA_RMSNORM = RMSNORM._replace(  # the same kernels and fallback; the weight it reads is weight + 1
    name="GemmaRMSNorm.forward_hip",
    attribute="GemmaRMSNorm.forward_hip",
    feed=RMSNORM.feed._replace(groups=(Group("x", (Attr(("gemma_weight", "weight")),)),)),
    selected_by=(("_use_aiter",), ("_has_vllm_rms_norm",)),
    routes=RMSNORM.routes[:1],
)

LAYER_NORM = Target(
    name="LayerNorm.forward_hip",
    module=LAYERNORM,
    attribute="LayerNorm.forward_hip",
    feed=Feed(
        groups=(Group("x", (WEIGHT, Attr(("bias",)))),),
        hidden="hidden_size",
        kernel_dtypes=("bfloat16", "float16"),
        dtype_attr="dtype",
    ),
    kernels=(norm.CK_LAYERNORM,),
    fallback=Native("forward_native", ("x",)),
    selected_by=(("_has_aiter_layer_norm",),),
    aiter_calls=("layer_norm",),
    bound_attrs=_BOUND,
)

DIFFUSION_RMSNORM = Target(  # the diffusion runtime's own RMSNorm (0.5.12+): the same aiter kernels
    name="multimodal_gen RMSNorm.forward_aiter",
    module="sglang.multimodal_gen.runtime.layers.layernorm",
    attribute="RMSNorm.forward_aiter",
    feed=Feed(rows=("residual",)),
    kernels=norm.RMSNORM2D,
    fallback=Native("forward_native", ("x", "residual")),
    selected_by=(("USE_AITER", "_use_aiter"),),
    aiter_calls=("rms_norm", "fused_add_rms_norm"),
    bound_attrs=("_forward_method",),
)

TARGETS = (RMSNORM, GEMMA_RMSNORM, LAYER_NORM, DIFFUSION_RMSNORM)
