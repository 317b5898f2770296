"""Named inputs for each guarded entry: the bug report's views and the other contract cases.

Shared by ``selftest``, the tests and the benchmarks.  Qwen3's packed QKV projection is
``(tokens, 6144)`` = 32 Q heads + 8 K heads + 8 V heads of 128; its Q slice viewed per head is
``(tokens, 32, 128)`` with stride ``(6144, 128, 1)``, its K slice the same at offset 4096.
That view reached RMSNorm on sglang main between 0.5.10 and 0.5.11, not in a release
(released ``apply_qk_norm`` copies it first); released model code reaches the others
(Hunyuan's rank-3 qk-norm, zero-token idle batches, fp32 RL weights: see the README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

Tensor = torch.Tensor
HEAD = 128
Q_HEADS, KV_HEADS = 32, 8
QKV_WIDTH = (Q_HEADS + 2 * KV_HEADS) * HEAD  # 6144
RMS, GEMMA, LAYER = "RMSNorm.forward_aiter", "GemmaRMSNorm.forward_hip", "LayerNorm.forward_hip"
Build = Callable[[int, torch.dtype, torch.device, torch.Generator], "CaseInputs"]


class CaseInputs(NamedTuple):
    """Arguments for the entry and the module's hidden size / weight dtype."""

    x: Tensor
    residual: Tensor | None
    post: Tensor | None
    hidden: int
    weight_dtype: torch.dtype | None  # None: the activation's dtype

    def args(self) -> tuple[Tensor | None, ...]:
        """Positional arguments for the entry / ``forward_native``."""
        if self.post is not None:
            return (self.x, self.residual, self.post)
        return (self.x,) if self.residual is None else (self.x, self.residual)


class Case(NamedTuple):
    name: str
    entry: str
    description: str
    build: Build
    uses_post: bool = False


def _randn(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype=dtype, device=device)


def qkv_views(tokens: int, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The bug report's Q and K views of one packed QKV buffer."""
    qkv = _randn((tokens, QKV_WIDTH), dtype, device, gen)
    q = qkv[:, : Q_HEADS * HEAD].view(tokens, Q_HEADS, HEAD)
    k = qkv[:, Q_HEADS * HEAD : (Q_HEADS + KV_HEADS) * HEAD].view(tokens, KV_HEADS, HEAD)
    return q, k


def _inputs(kind: str, hidden: int = 4096, wdt: bool = False, residual: bool = False, post: bool = False) -> Build:
    def build(t: int, dt: torch.dtype, dev: torch.device, g: torch.Generator) -> CaseInputs:
        if kind in ("q", "k"):
            x = qkv_views(t, dt, dev, g)[0 if kind == "q" else 1]
        elif kind == "zero":
            x = _randn((0, hidden), dt, dev, g)
        elif kind == "transposed":
            x = _randn((hidden, t), dt, dev, g).t()
        elif kind == "heads":
            x = _randn((t, Q_HEADS, hidden), dt, dev, g)
        else:
            x = _randn((t, hidden), dt, dev, g)
        shape = tuple(x.shape)
        res = _randn(shape, dt, dev, g) if residual else None
        extra = _randn(shape, dt, dev, g) if post else None
        weight_dtype = (torch.float32 if dt != torch.float32 else torch.bfloat16) if wdt else None
        return CaseInputs(x, res, extra, x.shape[-1], weight_dtype)

    return build


CASES: tuple[Case, ...] = (
    Case("qkv_q_view", RMS, "Q slice of packed QKV, (T, 32, 128) stride (6144, 128, 1)", _inputs("q")),
    Case("qkv_k_view", RMS, "K slice of packed QKV, (T, 8, 128) at offset 4096", _inputs("k")),
    Case("residual_path", RMS, "Q view with a (T, 32, 128) residual", _inputs("q", residual=True)),
    Case(
        "post_residual_path",
        RMS,
        "Q view, residual, post_residual_addition",
        _inputs("q", residual=True, post=True),
        uses_post=True,
    ),
    Case("zero_rows", RMS, "(0, 4096) activation: an idle batch", _inputs("zero")),
    Case("zero_rows_residual", RMS, "(0, 4096) activation with residual", _inputs("zero", residual=True)),
    Case("dtype_mismatch", RMS, "fp32 weight, bf16 (T, 4096) activation (RL on-policy norms)", _inputs("2d", wdt=True)),
    Case("noncontiguous_2d", RMS, "transposed (T, 4096), stride (1, T)", _inputs("transposed")),
    Case("contiguous_3d", RMS, "contiguous (T, 32, 128): Hunyuan's rank-3 qk-norm input", _inputs("heads", HEAD)),
    Case("safe_2d", RMS, "contiguous (T, 4096): already safe", _inputs("2d")),
    Case("safe_2d_residual", RMS, "contiguous (T, 4096) with residual: already safe", _inputs("2d", residual=True)),
    Case("gemma_zero_rows", GEMMA, "(0, 4096) activation: Step-3.5 / Qwen3-Next idle batch", _inputs("zero")),
    Case("gemma_contiguous_3d", GEMMA, "contiguous (T, 32, 128): per-head q/k norm", _inputs("heads", HEAD)),
    Case("gemma_residual_3d", GEMMA, "(T, 32, 128) with residual", _inputs("heads", HEAD, residual=True)),
    Case("gemma_dtype_mismatch", GEMMA, "fp32 weight, bf16 activation", _inputs("2d", wdt=True)),
    Case("layernorm_zero_rows", LAYER, "(0, 4096) activation: DSA indexer k_norm idle batch", _inputs("zero")),
    Case("layernorm_transposed", LAYER, "transposed (T, 4096): reshape keeps the stride", _inputs("transposed")),
    Case("layernorm_contiguous_3d", LAYER, "contiguous (T, 32, 128)", _inputs("heads", HEAD)),
)

BY_NAME = {c.name: c for c in CASES}


def weight(hidden: int, dtype: torch.dtype, device: torch.device | None = None, base: float = 1.0) -> Tensor:
    """A reproducible non-trivial norm weight (``base`` + 0.1 N(0, 1), seeded by ``hidden``)."""
    gen = torch.Generator().manual_seed(hidden)
    return (base + 0.1 * torch.randn(hidden, generator=gen)).to(device=device, dtype=dtype)


def make_module(
    layernorm: Any,
    entry: str,
    hidden: int,
    dtype: torch.dtype,
    weight_dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Any:
    """The entry's sglang module (from ``layernorm``, sglang's module) with seeded weights.

    Weights are set the way sglang's loaders do (``weight_loader`` where the module has one,
    so Gemma's precomputed ``gemma_weight`` follows) and then re-typed if ``weight_dtype`` asks.
    """
    wdt = weight_dtype or dtype
    if entry == LAYER:
        norm = layernorm.LayerNorm(hidden, eps=1e-6, dtype=dtype)
        norm.bias.data = weight(hidden + 1, dtype, base=0.0)[:hidden].clone()
    elif entry == GEMMA:
        norm = layernorm.GemmaRMSNorm(hidden, eps=1e-6)
    else:
        norm = layernorm.RMSNorm(hidden, eps=1e-6)
    norm = norm.to(device=device, dtype=dtype)
    w = weight(hidden, dtype, device, base=0.0 if entry == GEMMA else 1.0)
    loader = getattr(norm.weight, "weight_loader", None)
    if loader is not None:
        loader(norm.weight, w)
    else:
        norm.weight.data.copy_(w)
    if wdt != dtype:
        norm.to(dtype=wdt)
    return norm


def describe(t: Tensor | None) -> str:
    """``shape / stride`` text for a report."""
    if t is None:
        return "-"
    return f"{tuple(t.shape)} / {tuple(t.stride())}"
