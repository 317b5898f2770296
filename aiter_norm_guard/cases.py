"""The bug report's inputs and the other kernel-contract cases, as named input factories.

Shared by ``selftest``, the tests and the benchmarks.  Qwen3's packed QKV projection
is ``(tokens, 6144)`` = 32 Q heads + 8 K heads + 8 V heads of 128; its Q slice viewed
per head is ``(tokens, 32, 128)`` with stride ``(6144, 128, 1)``, its K slice the same
at element offset 4096.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

Tensor = torch.Tensor
HEAD = 128
Q_HEADS, KV_HEADS = 32, 8
QKV_WIDTH = (Q_HEADS + 2 * KV_HEADS) * HEAD  # 6144


class CaseInputs(NamedTuple):
    """Arguments for ``forward_aiter`` and the module's hidden size / weight dtype."""

    x: Tensor
    residual: Tensor | None
    post: Tensor | None
    hidden: int
    weight_dtype: torch.dtype | None  # None: the activation's dtype

    def args(self) -> tuple[Tensor | None, ...]:
        """Positional arguments for ``forward_aiter`` / ``forward_native``."""
        if self.post is not None:
            return (self.x, self.residual, self.post)
        return (self.x,) if self.residual is None else (self.x, self.residual)


class Case(NamedTuple):
    name: str
    description: str
    build: Callable[[int, torch.dtype, torch.device, torch.Generator], CaseInputs]
    uses_post: bool = False


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype=dtype, device=device)


def qkv_views(tokens: int, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The bug report's Q and K views of one packed QKV buffer."""
    qkv = _randn((tokens, QKV_WIDTH), dtype, device, gen)
    q = qkv[:, : Q_HEADS * HEAD].view(tokens, Q_HEADS, HEAD)
    k = qkv[:, Q_HEADS * HEAD : (Q_HEADS + KV_HEADS) * HEAD].view(tokens, KV_HEADS, HEAD)
    return q, k


def _q(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(qkv_views(t, dt, dev, g)[0], None, None, HEAD, None)


def _k(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(qkv_views(t, dt, dev, g)[1], None, None, HEAD, None)


def _residual(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    q = qkv_views(t, dt, dev, g)[0]
    return CaseInputs(q, _randn(tuple(q.shape), dt, dev, g), None, HEAD, None)


def _post(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    q = qkv_views(t, dt, dev, g)[0]
    shape = tuple(q.shape)
    return CaseInputs(q, _randn(shape, dt, dev, g), _randn(shape, dt, dev, g), HEAD, None)


def _zero_rows(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((0, 4096), dt, dev, g), None, None, 4096, None)


def _zero_rows_residual(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((0, 4096), dt, dev, g), _randn((0, 4096), dt, dev, g), None, 4096, None)


def _dtype_mismatch(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    wdt = torch.float32 if dt != torch.float32 else torch.bfloat16
    return CaseInputs(_randn((t, 4096), dt, dev, g), None, None, 4096, wdt)


def _transposed(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((4096, t), dt, dev, g).t(), None, None, 4096, None)


def _contig_3d(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((t, Q_HEADS, HEAD), dt, dev, g), None, None, HEAD, None)


def _safe_2d(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((t, 4096), dt, dev, g), None, None, 4096, None)


def _safe_2d_residual(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
    return CaseInputs(_randn((t, 4096), dt, dev, g), _randn((t, 4096), dt, dev, g), None, 4096, None)


CASES: tuple[Case, ...] = (
    Case("qkv_q_view", "Q slice of packed QKV, (T, 32, 128) stride (6144, 128, 1)", _q),
    Case("qkv_k_view", "K slice of packed QKV, (T, 8, 128) at offset 4096", _k),
    Case("residual_path", "Q view with a (T, 32, 128) residual", _residual),
    Case("post_residual_path", "Q view with residual and post_residual_addition", _post, uses_post=True),
    Case("zero_rows", "(0, 4096) activation", _zero_rows),
    Case("zero_rows_residual", "(0, 4096) activation with residual", _zero_rows_residual),
    Case("dtype_mismatch", "fp32 weight, bf16 (T, 4096) activation (bf16 weight for fp32)", _dtype_mismatch),
    Case("noncontiguous_2d", "transposed (T, 4096), stride (1, T)", _transposed),
    Case("contiguous_3d", "contiguous (T, 32, 128)", _contig_3d),
    Case("safe_2d", "contiguous (T, 4096): already safe", _safe_2d),
    Case("safe_2d_residual", "contiguous (T, 4096) with residual: already safe", _safe_2d_residual),
)

BY_NAME = {c.name: c for c in CASES}


def weight(hidden: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
    """A reproducible non-trivial RMSNorm weight (1 + 0.1 N(0, 1), seeded by ``hidden``)."""
    gen = torch.Generator().manual_seed(hidden)
    return (1 + 0.1 * torch.randn(hidden, generator=gen)).to(device=device, dtype=dtype)


def describe(t: Tensor | None) -> str:
    """``shape / stride`` text for a report."""
    if t is None:
        return "-"
    return f"{tuple(t.shape)} / {tuple(t.stride())}"
