"""Guards for a fused q / k RMSNorm + RoPE + KV-cache write (Qwen3's decode), from its contract.

:class:`CacheWriteGuard` wraps the release's method around the kernel: the call reaches it untouched
when :func:`refusal` finds nothing the kernel would get wrong, else the fallback (``fallbacks.unfused``, the
release's own unfused route) runs.  :class:`CacheViewGuard` wraps the kernel's binding: a contiguous
3-D ``(slots, Hk, D)`` cache is passed as the contract's zero-copy view, which every aiter build reads
right (:mod:`aiter_norm_guard.kernels.rope_cache`); anything else passes through as it came.  Both are
plain functions with the original's exact signature, compiled once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard import _state
from aiter_norm_guard.guard.checks import own_failure, record
from aiter_norm_guard.guard.fallbacks import FALLBACKS, pool_of
from aiter_norm_guard.guard.layout import GUARD_ERROR
from aiter_norm_guard.guard.registry import EntryGuard
from aiter_norm_guard.guard.signature import POSITIONAL, entry_signature
from aiter_norm_guard.kernels.form import CacheWrite

Tensor = torch.Tensor
_KERNEL_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_I64, _F32 = torch.int64, torch.float32

ZERO_TOKENS = "zero tokens: the kernel launches an empty grid"
ACTIVATION_DTYPE = "an activation dtype the kernel is not built for"
HEAD_SIZE = "a head size the kernel is not built for (AITER_CHECK)"
PARTIAL_ROTARY = "rotary_dim != head_dim: the call passes none, and the kernel rotates head_dim"
EPSILONS = "q_norm and k_norm of different epsilons: the kernel takes one"
NORM_WEIGHT = "a q / k norm weight of another dtype, length, layout or device: read as head_dim activation elements"
POSITIONS = "positions not int64 of the kernel's rank and token count, on the device"
SLOTS = "out_cache_loc not contiguous int64 of one slot per token, on the device"
KV_DTYPE = "a KV cache of another dtype (fp8): the release's call quantises with scale 1.0, not the layer's"
KV_LAYOUT = "a KV cache layout that no zero-copy view makes right for every aiter build"
SCALES = "k / v scales not one float32 each on the host (the kernel dereferences them there)"
POOL = "a KV pool whose store maps slots itself: the kernel writes at the raw out_cache_loc"
#: The pool store the kernel's addressing reproduces: row ``loc`` of the buffer ``get_kv_buffer`` returns.
DIRECT_STORE = "MHATokenToKVPool.set_kv_buffer"


def direct_store(pool: Any) -> bool:
    """Whether ``pool`` stores K / V at row ``loc`` of its buffers, as the kernel writes them (decided once per
    pool type: sglang's ``MHATokenToKVPool`` store, not overridden)."""
    kind = type(pool)
    found = _state.DIRECT_STORES.get(kind)
    if found is None:
        found = _state.DIRECT_STORES[kind] = (
            getattr(getattr(kind, "set_kv_buffer", None), "__qualname__", "") == DIRECT_STORE
        )
    return found


VIEW = "3-D cache given as unsqueeze(1)"

#: What :func:`refusal` checks, in order, for reports.
CHECKS = (
    POOL,
    ZERO_TOKENS,
    ACTIVATION_DTYPE,
    HEAD_SIZE,
    PARTIAL_ROTARY,
    EPSILONS,
    NORM_WEIGHT,
    POSITIONS,
    SLOTS,
    KV_DTYPE,
    KV_LAYOUT,
    SCALES,
)


def contract_for(contracts: tuple[CacheWrite, ...], rotary: Any) -> CacheWrite:
    """The kernel a call reaches: the mrope one (2-D positions) where the rotary embedding has sections."""
    rank = 2 if getattr(rotary, "mrope_section", None) is not None else 1
    return next((c for c in contracts if c.positions_rank == rank), contracts[0])


@functools.cache
def _dtypes(contract: CacheWrite) -> tuple[torch.dtype, ...]:
    return tuple(_KERNEL_DTYPES[d] for d in contract.dtypes)


def _weight_ok(w: Any, dtype: torch.dtype, n: int, device: int) -> bool:
    return (
        isinstance(w, Tensor) and w.dtype is dtype and w.numel() == n and w.is_contiguous() and w.get_device() == device
    )


def _host_scale(s: Any) -> bool:
    return isinstance(s, Tensor) and not s.is_cuda and s.dtype is _F32 and s.numel() >= 1


def _cache_ok(cache: Any, dtype: torch.dtype, heads: int, d: int, device: int) -> bool:
    """A contiguous ``(slots, Hk, D)`` buffer (the view fixes it), or a contiguous ``(blocks, B, Hk, D)`` one
    (``unsqueeze(1)``'s, or a paged pool's: slot ``s`` at ``s * Hk * D`` in every build)."""
    if not (isinstance(cache, Tensor) and cache.is_contiguous() and cache.get_device() == device):
        return False
    shape = cache.shape
    return (len(shape) == 3 and shape[1] == heads and shape[2] == d) or (
        len(shape) == 4 and shape[2] == heads and shape[3] == d
    )


def refusal(
    contract: CacheWrite, attn: Any, positions: Any, hidden_states: Any, slots: Any, k_cache: Any, v_cache: Any
) -> str | None:
    """Why the kernel cannot take this call as the release makes it, or None (then it is right).

    ``attn`` is the release's attention module (head sizes, norms, rotary, scales); the rest are the
    call's tensors: ``slots`` the out-cache locations, the caches as the release hands them to the kernel.
    """
    t = hidden_states.shape[0]
    if t == 0:
        return ZERO_TOKENS
    dtype, device = hidden_states.dtype, hidden_states.get_device()
    if dtype not in _dtypes(contract):
        return ACTIVATION_DTYPE
    d, heads = attn.head_dim, attn.num_kv_heads
    if d not in contract.head_sizes:
        return HEAD_SIZE
    modules = attn._modules  # submodules and parameters straight from their dicts: no nn.Module.__getattr__
    if getattr(modules["rotary_emb"], "rotary_dim", d) != d:
        return PARTIAL_ROTARY
    q_norm, k_norm = modules["q_norm"], modules["k_norm"]
    if q_norm.variance_epsilon != k_norm.variance_epsilon:
        return EPSILONS
    qw, kw = q_norm._parameters.get("weight"), k_norm._parameters.get("weight")
    if not (_weight_ok(qw, dtype, d, device) and _weight_ok(kw, dtype, d, device)):
        return NORM_WEIGHT
    if not isinstance(positions, Tensor) or positions.dtype is not _I64 or positions.get_device() != device:
        return POSITIONS
    shape = positions.shape
    if len(shape) != contract.positions_rank or shape[-1] != t or (len(shape) == 2 and shape[0] != 3):
        return POSITIONS
    if not (
        isinstance(slots, Tensor)
        and slots.dtype is _I64
        and slots.dim() == 1
        and slots.shape[0] == t
        and slots.is_contiguous()
        and slots.get_device() == device
    ):
        return SLOTS
    if not (isinstance(k_cache, Tensor) and isinstance(v_cache, Tensor)):
        return KV_LAYOUT
    if k_cache.dtype is not dtype or v_cache.dtype is not dtype:
        return KV_DTYPE
    if not (_cache_ok(k_cache, dtype, heads, d, device) and _cache_ok(v_cache, dtype, heads, d, device)):
        return KV_LAYOUT
    if not (_host_scale(getattr(attn, "_fused_k_scale", None)) and _host_scale(getattr(attn, "_fused_v_scale", None))):
        return SCALES
    return None


class CacheWriteGuard(EntryGuard):
    """A method around a fused KV-cache write, judged per call by the contract; the fallback is the release's
    unfused route."""

    def prepare(self) -> None:
        needed = {"positions", "hidden_states", "forward_batch"}
        self.sig = entry_signature(self.original, needed)
        self.names = [p.name for p in self.sig.parameters.values() if p.kind in POSITIONAL]
        missing = needed - set(self.names[1:])
        if missing or not self.names:
            raise LookupError(f"{self.target.name}{self.sig} has no parameter {', '.join(sorted(missing))}")
        self.cache_given = "k_cache" in self.names and "v_cache" in self.names
        self.contracts = self.target.cache_writes
        self.contract = self.contracts[0] if len(self.contracts) == 1 else None
        self._fallback_fn = FALLBACKS[self.target.fallback]

    def judge(
        self,
        attn: Any,
        positions: Any,
        hidden_states: Any,
        forward_batch: Any,
        k_cache: Any = None,
        v_cache: Any = None,
    ) -> str | None:
        """:func:`refusal` for one call, the caches fetched from the pool where the method fetches them."""
        if not isinstance(hidden_states, Tensor):
            return None  # not ours to judge
        try:
            modules = attn._modules
            pool = pool_of(self.original, forward_batch)
            if not direct_store(pool):
                return POOL
            if not self.cache_given:
                k_cache, v_cache = pool.get_kv_buffer(modules["attn"].layer_id)
            contract = self.contract or contract_for(self.contracts, modules["rotary_emb"])
            return refusal(contract, attn, positions, hidden_states, forward_batch.out_cache_loc, k_cache, v_cache)
        except Exception as exc:  # the guard's own failure: the release's unfused route, never an unchecked kernel
            own_failure(self.target.name, exc, "the call took the release's unfused route")
            return GUARD_ERROR

    def fallback(self, values: tuple[Any, ...], keywords: dict[str, Any], reason: str) -> Any:
        record(self.target.name, reason)
        bound = {**dict(zip(self.names, values, strict=False)), **keywords}
        return self._fallback_fn(self.original, bound, reason)

    def per_call_checks(self) -> list[str]:
        return list(CHECKS)

    def build(self) -> Callable[..., Any]:
        judged = f"{self.names[0]}, positions, hidden_states, forward_batch" + (
            ", k_cache, v_cache" if self.cache_given else ""
        )
        return self.compile(
            {"_judge": self.judge, "_fallback": self.fallback},
            lambda call, slow_args: [
                f"if _guard.enabled and (_reason := _judge({judged})) is not None:",
                f"    return _fallback({slow_args}, _reason)",
                f"return _original({call})",
            ],
        )


class CacheViewGuard(EntryGuard):
    """A fused KV-cache write's binding: a contiguous 3-D cache given as the contract's zero-copy view."""

    def prepare(self) -> None:
        assert self.target.cache_view is not None
        self.k, self.v = self.target.cache_view
        self.sig = entry_signature(self.original, {self.k, self.v})
        if not {self.k, self.v} <= set(self.sig.parameters):
            raise LookupError(f"{self.target.name}{self.sig} has no parameters {self.k}, {self.v}")

    def per_call_checks(self) -> list[str]:
        return [f"{self.k} / {self.v}: a contiguous (slots, Hk, D) buffer is given as unsqueeze(1)"]

    def viewed(self) -> None:
        record(self.target.name, VIEW)

    def build(self) -> Callable[..., Any]:
        k, v = self.k, self.v
        return self.compile(
            {"_Tensor": Tensor},
            lambda call, _: [
                f"if _guard.enabled and isinstance({k}, _Tensor) and isinstance({v}, _Tensor) and {k}.dim() == 3 "
                f"and {v}.dim() == 3 and {k}.is_contiguous() and {v}.is_contiguous():",
                f"    {k}, {v} = {k}.unsqueeze(1), {v}.unsqueeze(1)",
                "    _guard.viewed()",
                f"return _original({call})",
            ],
        )
