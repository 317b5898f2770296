"""The guard of aiter's ``fused_qk_norm_rope_group_quant`` binding (DeepSeek-V4's two-pool fp8 store), from its
contract (:mod:`aiter_norm_guard.kernels.group_quant_store`).

A plain function with the original's exact signature, compiled once.  A call the kernel reads right (q 3-D with
T > 0 rows, kv of T rows, q / k_weight of kv's dtype, a contiguous 1-D k_weight, 1-D int64 positions of >= T)
reaches aiter untouched, decided by a handful of attribute reads and no allocation.  Otherwise, where there is an
exact answer the guard gives it: T == 0 writes nothing (the wrapper's return, its buffers allocated empty as it
allocates them, no launch); a strided k_weight is copied contiguous once.  Where aiter would misread and nothing
is exact, a ValueError names the input and the aiter line that proves the misread.  Anything else (a rank or
shape aiter's own checks reject) passes through as it came.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard.guard.checks import own_failure, record
from aiter_norm_guard.guard.layout import GUARD_ERROR
from aiter_norm_guard.guard.registry import EntryGuard
from aiter_norm_guard.guard.signature import entry_signature
from aiter_norm_guard.kernels import group_quant_store as contract

Tensor = torch.Tensor
_I64 = torch.int64
_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fnuz", "float8_e4m3fn") if hasattr(torch, n))
_NEEDED = ("q", "kv", "k_weight", "positions", "cos_cache")

ZERO_TOKENS = "zero tokens: nothing to write (aiter launches an empty grid)"
K_WEIGHT_COPY = "a strided k_weight: one contiguous copy"
KV_ROWS = "kv rows != q rows"
Q_DTYPE = "q of another dtype than kv"
K_WEIGHT_DTYPE = "k_weight of another dtype than kv / q"
POSITIONS = "positions not 1-D int64 of >= T"

CHECKS = (
    f"{KV_ROWS}: ValueError",
    f"{ZERO_TOKENS}: the wrapper's return, no launch",
    f"{Q_DTYPE}: ValueError",
    f"{K_WEIGHT_DTYPE}: ValueError",
    f"{POSITIONS}: ValueError",
    K_WEIGHT_COPY,
)


class Refused(ValueError):
    """A call aiter's fused group-quant store would misread (``reason``: what is counted)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _refuse(reason: str, what: str, detail: str, proof: str) -> Refused:
    return Refused(
        reason,
        f"aiter_norm_guard: fused_qk_norm_rope_group_quant would misread {what} ({detail}): {proof}; "
        "the kernel was not called",
    )


class GroupQuantStoreGuard(EntryGuard):
    """The binding of aiter's fused group-quant store, guarded by its contract."""

    def prepare(self) -> None:
        self.sig = entry_signature(self.original, set(_NEEDED))
        missing = set(_NEEDED) - set(self.sig.parameters)
        if missing:
            raise LookupError(f"{self.target.name}{self.sig} has no parameter {', '.join(sorted(missing))}")

    def per_call_checks(self) -> list[str]:
        return list(CHECKS)

    # -- the slow path -----------------------------------------------------------------------------
    def slow(self, values: tuple[Any, ...], keywords: dict[str, Any]) -> Any:
        """A call the fast path did not pass: the exact answer, a ValueError, or aiter untouched."""
        try:
            bound = self.sig.bind(*values, **keywords)
            bound.apply_defaults()
            a = bound.arguments
            action = self.judge(a)
        except Refused as exc:
            record(self.target.name, exc.reason)
            raise
        except Exception as exc:  # the guard's own failure: never an unchecked kernel
            own_failure(self.target.name, exc, "the call raised instead of reaching the kernel")
            record(self.target.name, GUARD_ERROR)
            raise RuntimeError(
                f"aiter_norm_guard: internal error judging {self.target.name} ({type(exc).__name__}: {exc}); "
                "the kernel was not called"
            ) from exc
        if action is None:
            return self.original(*values, **keywords)
        reason, result = action
        record(self.target.name, reason)
        if reason == ZERO_TOKENS:
            return result
        a["k_weight"] = result  # K_WEIGHT_COPY
        return self.original(*bound.args, **bound.kwargs)

    def judge(self, a: dict[str, Any]) -> tuple[str, Any] | None:
        """None: aiter takes the call as it came.  Else ``(reason, value)``: the zero-token result, or the
        contiguous k_weight.  Raises :class:`Refused` where aiter would misread."""
        q, kv, w, pos = a["q"], a["kv"], a["k_weight"], a["positions"]
        if not all(isinstance(x, Tensor) for x in (q, kv, w, pos, a["cos_cache"])):
            return None  # not ours to judge: aiter's own code fails on it
        if q.dim() != 3 or kv.dim() not in (2, 3):
            return None  # aiter's assert (:430) / AITER_CHECK (:5669) / its kv shape read say so themselves
        t = q.shape[0]
        if kv.shape[0] != t:
            raise _refuse(KV_ROWS, "kv rows", f"kv has {kv.shape[0]} rows, q has T = {t}", contract.KV_ROWS)
        if t == 0:
            result = self.nothing_written(a)
            return None if result is None else (ZERO_TOKENS, result)
        if q.dtype != kv.dtype:
            raise _refuse(Q_DTYPE, "q's dtype", f"q is {q.dtype}, kv is {kv.dtype}", contract.Q_DTYPE)
        if w.dtype != kv.dtype:
            raise _refuse(
                K_WEIGHT_DTYPE,
                "k_weight's dtype",
                f"k_weight is {w.dtype}, kv and q are {kv.dtype}",
                contract.K_WEIGHT_DTYPE,
            )
        if pos.dtype != _I64 or pos.dim() != 1 or pos.shape[0] < t:
            detail = f"positions {pos.dtype} of shape {tuple(pos.shape)}, T = {t}"
            raise _refuse(POSITIONS, "positions", detail, contract.POSITIONS)
        if w.dim() == 1 and not w.is_contiguous():
            return K_WEIGHT_COPY, w.contiguous()
        return None

    @staticmethod
    def nothing_written(a: dict[str, Any]) -> tuple[Any, ...] | None:
        """What the wrapper returns for T == 0 had its kernel written nothing: its buffers, allocated empty where
        it allocates them (:455-480), returned as at :505.  None where its own asserts (:446-454) would fail."""
        q, kv = a["q"], a["kv"]
        t, h, d = q.shape
        kv_heads = kv.shape[1] if kv.dim() == 3 else 1
        rot = a["cos_cache"].shape[-1] * 2
        q_buf, q_rope = a.get("q_nope_scale_buff"), a.get("q_rope_buff")
        k_buf, k_rope = a.get("k_nope_scale_buff"), a.get("k_rope_buff")
        out_dtype = q_buf.dtype if q_buf is not None else a.get("q_out_dtype", torch.bfloat16)
        fp8 = out_dtype == _pool_fp8()
        group = a.get("quant_group_size", 64)
        if fp8 and (group not in (32, 64) or (d - rot) % group):
            return None
        if q_buf is None:
            q_buf = torch.empty((t, h, d), dtype=out_dtype, device=q.device)
        if fp8 and q_rope is None:
            q_rope = torch.empty((t, h, rot), dtype=kv.dtype, device=q.device)
        if not fp8:
            q_rope = None
        if k_buf is None:
            k_buf = torch.empty((t, kv_heads, d), dtype=_pool_fp8(), device=q.device)
        if k_rope is None:
            k_rope = torch.empty((t, kv_heads, rot), dtype=kv.dtype, device=q.device)
        return q_buf, q_rope, k_buf, k_rope

    # -- the fast path -----------------------------------------------------------------------------
    def build(self) -> Callable[..., Any]:
        return self.compile(
            {"_slow": self.slow, "_T": Tensor, "_I64": _I64},
            lambda call, slow_args: [
                "if not _guard.enabled or (",
                "    isinstance(q, _T) and isinstance(kv, _T) and isinstance(k_weight, _T)",
                "    and isinstance(positions, _T)",
                "    and q.dim() == 3 and kv.dim() >= 2 and q.shape[0] and kv.shape[0] == q.shape[0]",
                "    and q.dtype is kv.dtype and k_weight.dtype is kv.dtype and k_weight.dim() == 1",
                "    and k_weight.is_contiguous() and positions.dtype is _I64 and positions.dim() == 1",
                "    and positions.shape[0] >= q.shape[0]",
                "):",
                f"    return _original({call})",
                f"return _slow({slow_args})",
            ],
        )


def _pool_fp8() -> torch.dtype:
    """aiter's ``dtypes.fp8`` (the K pool's dtype, :475), as the installed aiter names it."""
    try:
        from aiter import dtypes  # type: ignore[import-not-found]

        return dtypes.fp8  # type: ignore[no-any-return]
    except Exception:
        return _FP8[0]
