"""Layer 1, what the guard patches, as data: one declaration per entry into an aiter norm kernel.

A :class:`Target` names a function by dotted path (``module`` + ``attribute``), the kernel
contracts it may reach (:mod:`aiter_norm_guard.kernels`), how its parameters feed them
(:class:`Feed`), what runs instead when no layout can meet them (``fallback``), and how to
tell that the release has the entry's aiter branch and selected it.  The declarations live
by family (``layernorm``, ``fused_quant``, ``allreduce``, ``attention``); what each release's
entry already checks itself is in ``upstream``.  Nothing here imports torch or sglang.
"""

from __future__ import annotations

from aiter_norm_guard.targets import allreduce, attention, deepseek_v4, fused_quant, layernorm, qwen3
from aiter_norm_guard.targets.declaration import Attr, Fallback, Feed, Group, Native, Param, Route, Target, selected

TARGETS: tuple[Target, ...] = (
    *layernorm.TARGETS,
    *fused_quant.TARGETS,
    *allreduce.TARGETS,
    *attention.TARGETS,
    *qwen3.TARGETS,
    *deepseek_v4.TARGETS,
)
LAYERNORM = layernorm.LAYERNORM  # every sglang has it
__all__ = [
    "LAYERNORM",
    "TARGETS",
    "Attr",
    "Fallback",
    "Feed",
    "Group",
    "Native",
    "Param",
    "Route",
    "Target",
    "selected",
]
