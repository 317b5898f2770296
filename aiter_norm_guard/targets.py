"""What the guard patches, as data: dotted targets and the wrapper factory for each.

Factories are named as ``"module:function"`` and imported only when their target's
module is imported, so importing the guard (or starting an interpreter with it on)
never imports torch by itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple


class Target(NamedTuple):
    """One function to replace when its module is imported.

    ``attribute`` is a dotted path inside ``module`` (``Class.method``);
    ``bound_attrs`` names instance attributes that may hold the original as a bound
    method, bound before the guard arrived (sglang's ``_forward_method``).
    """

    name: str
    module: str
    attribute: str
    make_wrapper: str
    bound_attrs: tuple[str, ...]
    fixed_upstream: str

    def wrapper_factory(self) -> Callable[..., Callable[..., Any]]:
        """Import and return the factory named by ``make_wrapper``."""
        module, _, name = self.make_wrapper.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


RMSNORM_FORWARD_AITER = Target(
    name="RMSNorm.forward_aiter",
    module="sglang.srt.layers.layernorm",
    attribute="RMSNorm.forward_aiter",
    make_wrapper="aiter_norm_guard.guard:make_guarded_forward",
    bound_attrs=("_forward_method", "_original_forward_method"),
    fixed_upstream="x without residual from 0.5.11 (PR #23974); residual path from 0.5.20",
)

TARGETS: tuple[Target, ...] = (RMSNORM_FORWARD_AITER,)
