"""What the guard patches, as data: each entry into an aiter norm kernel, its contract and fallback.

A :class:`Target` names a function by dotted path (``module`` + ``attribute``), the kernel
contract it must meet (:class:`Contract`, in the entry's own parameter names), what runs
instead when no layout can meet it (``fallback``), and how to tell that the release has the
entry's aiter branch and selected it.  Nothing here imports torch or sglang; the guarded
functions are built from these declarations by :mod:`aiter_norm_guard.patching.guard`.
"""

from __future__ import annotations

from typing import NamedTuple

LAYERNORM = "sglang.srt.layers.layernorm"


class Contract(NamedTuple):
    """What the kernel behind an entry reads, named by the entry's parameters.

    ``weights`` are read as ``n`` elements of the activation's dtype: ``"self.NAME"`` is a
    module tensor (``"self.A|self.B"``: the first that exists), a bare name is a parameter.
    ``like_x`` are indexed with the activation's rows (residual, post-residual addition).
    ``keep_rank``: the entry unpacks a 2-D shape itself, so tensors are only made contiguous.
    ``pad``: the entry has RMSNorm's ``x_pad_to_multiple`` path, a Triton kernel that reads
    through both strides and the weight in its own dtype, whose result the release shapes.
    ``kernel_dtypes`` / ``dtype_attr``: the entry reaches the kernel only for these activation
    dtypes, equal to this module attribute; other calls are the release's own native path.
    """

    x: str = "x"
    like_x: tuple[str, ...] = ()
    weights: tuple[str, ...] = ("self.weight",)
    keep_rank: bool = False
    pad: bool = False
    kernel_dtypes: tuple[str, ...] = ()
    dtype_attr: str | None = None


class Target(NamedTuple):
    """One entry to guard when its module is imported.

    ``fallback``: ``"self.METHOD"`` calls that method of the module with ``fallback_params``
    (those the entry has); ``"package.module:function"`` calls ``function(original, bound,
    reason)``.  ``selected_by``: module globals that must all be true for the aiter branch to
    run; ``aiter_calls``: the module's aiter bindings that branch calls (checked in the
    entry's source, so a release whose branch calls something else is left alone).
    ``bound_attrs``: instance attributes that may hold the entry bound before the guard came.
    """

    name: str
    module: str
    attribute: str
    kernel: str
    contract: Contract
    fallback: str
    fallback_params: tuple[str, ...]
    selected_by: tuple[str, ...]
    aiter_calls: tuple[str, ...]
    bound_attrs: tuple[str, ...] = ()


_RESIDUAL = ("residual", "post_residual_addition")
_NATIVE_ARGS = ("x", "residual", "post_residual_addition")
_BOUND = ("_forward_method", "_original_forward_method")
_QUANT_CALLS = ("_aiter_rmsnorm_quant", "_aiter_add_rmsnorm_quant")

RMSNORM = Target(
    name="RMSNorm.forward_aiter",
    module=LAYERNORM,
    attribute="RMSNorm.forward_aiter",
    kernel="aiter rmsnorm2d_fwd / rmsnorm2d_fwd_with_add (x_pad_to_multiple: fused_add_rmsnorm_pad)",
    contract=Contract(like_x=_RESIDUAL, pad=True),
    fallback="self.forward_native",
    fallback_params=_NATIVE_ARGS,
    selected_by=("_use_aiter",),
    aiter_calls=("rms_norm", "fused_add_rms_norm"),
    bound_attrs=_BOUND,
)

GEMMA_RMSNORM = RMSNORM._replace(  # the same kernels and fallback; the weight it reads is weight + 1
    name="GemmaRMSNorm.forward_hip",
    attribute="GemmaRMSNorm.forward_hip",
    kernel="aiter rmsnorm2d_fwd / rmsnorm2d_fwd_with_add (weight + 1)",
    contract=Contract(like_x=_RESIDUAL, weights=("self.gemma_weight|self.weight",)),
    selected_by=("_use_aiter", "_has_vllm_rms_norm"),
)

LAYER_NORM = Target(
    name="LayerNorm.forward_hip",
    module=LAYERNORM,
    attribute="LayerNorm.forward_hip",
    kernel="aiter layernorm2d_fwd",
    contract=Contract(
        weights=("self.weight", "self.bias"), kernel_dtypes=("bfloat16", "float16"), dtype_attr="dtype"
    ),
    fallback="self.forward_native",
    fallback_params=("x",),
    selected_by=("_has_aiter_layer_norm",),
    aiter_calls=("layer_norm",),
    bound_attrs=_BOUND,
)

_QUANT_CONTRACT = Contract(x="hidden_states", like_x=("residual",), weights=("weight",), keep_rank=True)
_QUANT_FALLBACK = "aiter_norm_guard.targets.fallbacks:fp8_per_token_quant"

COMMUNICATOR_QUANT = Target(
    name="communicator._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.communicator",
    attribute="_fused_rmsnorm_fp8_per_token_quant",
    kernel="aiter rmsnorm_quant / add_rmsnorm_quant (fp8 per token)",
    contract=_QUANT_CONTRACT,
    fallback=_QUANT_FALLBACK,
    fallback_params=(),
    selected_by=("_use_aiter",),
    aiter_calls=_QUANT_CALLS,
)

ADD_NORM_QUANT = COMMUNICATOR_QUANT._replace(
    name="add_norm._fused_rmsnorm_fp8_per_token_quant",
    module="sglang.srt.layers.layer_boundary.residual.add_norm",
)

TARGETS: tuple[Target, ...] = (RMSNORM, GEMMA_RMSNORM, LAYER_NORM, COMMUNICATOR_QUANT, ADD_NORM_QUANT)
BY_NAME = {t.name: t for t in TARGETS}
