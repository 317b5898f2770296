"""What each release's own entry already does before its kernel, by the entry's fingerprint.

The guard skips, per call, exactly what the installed release checks itself, and no more:
an entry is recognised only when its source has the fingerprint of a release read here
(:mod:`~aiter_norm_guard.targets.fingerprint`: statements, not formatting).  Any other
source (a build between releases, a patched file, no source at all) gets every check.
Each row was read from the release's ``sglang/srt/layers/layernorm.py`` (the line numbers
are the first release's).
"""

from __future__ import annotations

import ast
from typing import NamedTuple

from aiter_norm_guard.kernels.needs import (
    HOST,
    ROWS_LAYOUT,
    WEIGHT_DTYPE,
    WEIGHT_STRIDE,
    X_CONTIGUOUS_2D,
    X_LAYOUT,
    X_RESHAPED,
    ZERO_ROWS,
)
from aiter_norm_guard.targets import source_scan
from aiter_norm_guard.targets.fingerprint import fingerprint


class Upstream(NamedTuple):
    """What a release's entry does itself, called with ``x`` alone or with a residual."""

    releases: str
    alone: frozenset[str]
    with_rows: frozenset[str]
    how: str


def _same(releases: str, done: frozenset[str], how: str) -> Upstream:
    return Upstream(releases, done, done, how)


_NONE: frozenset[str] = frozenset()
_V11 = frozenset({X_LAYOUT})  # x.contiguous().reshape(-1, n) when x.dim() != 2 and residual is None, else contiguous
_V13 = _V11 | {ZERO_ROWS}  # if x.shape[0] == 0: return x (, residual)
_V16 = _V13 | {WEIGHT_DTYPE}  # if self.weight.data.dtype != x.dtype: return self.forward_native(...)
_V19 = _V16 | {ROWS_LAYOUT}  # x, residual, post: .contiguous().reshape(-1, n) when x.dim() != 2, else contiguous
_V21 = _V19 | {HOST}  # if not x.is_cuda: return self.forward_native(...)

UPSTREAM: dict[str, dict[str, Upstream]] = {
    "RMSNorm.forward_aiter": {
        "01820d7fa7be9d18": _same("0.5.10", _NONE, "no check (forward_aiter :225)"),
        "8dd4b66cadaf4f5e": Upstream(
            "0.5.11 - 0.5.12",
            _V11,
            frozenset({X_CONTIGUOUS_2D}),
            "x to 2-D contiguous rows without a residual; with one, only a 2-D x made contiguous (:293)",
        ),
        "b6bb02a2ca6d6dd8": Upstream(
            "0.5.13 - 0.5.14",
            _V13,
            frozenset({X_CONTIGUOUS_2D, ZERO_ROWS}),
            "as 0.5.11, and shape[0] == 0 returns x (:354)",
        ),
        "7d41473f4aa36b15": Upstream(
            "0.5.15",
            _V13,
            frozenset({X_CONTIGUOUS_2D, ZERO_ROWS}),
            "as 0.5.13 (and a batch-invariant branch: native or sglang's kernel)",
        ),
        "5d417b9d5350b2ec": Upstream(
            "0.5.16",
            _V16,
            frozenset({X_CONTIGUOUS_2D, ZERO_ROWS, WEIGHT_DTYPE}),
            "as 0.5.13, and a weight of another dtype to forward_native (:377)",
        ),
        "641fdc2e2a0e6d86": Upstream(
            "0.5.17", _V16, frozenset({X_CONTIGUOUS_2D, ZERO_ROWS, WEIGHT_DTYPE}), "as 0.5.16"
        ),
        "6f17d1d227dcb94d": Upstream(
            "0.5.18", _V16, frozenset({X_CONTIGUOUS_2D, ZERO_ROWS, WEIGHT_DTYPE}), "as 0.5.16 (adds quant_linear)"
        ),
        "a498a44b4cf57575": _same(
            "0.5.19 - 0.5.20",
            _V19,
            "x, residual and post to 2-D contiguous rows; "
            "shape[0] == 0 returns; a weight of another dtype to forward_native (:636-681)",
        ),
        "021a145c3097e88b": _same("0.5.21 - 0.5.23", _V21, "as 0.5.19, and a host x to forward_native (:652)"),
    },
    "GemmaRMSNorm.forward_hip": {
        "adce97a3ee12d2f8": _same(
            "0.5.10", frozenset({WEIGHT_STRIDE}), "reads weight.data + 1.0: a new, contiguous tensor (:508)"
        ),
        "7b7ffb0775dd1177": _same("0.5.11 - 0.5.15", _NONE, "no check (reads the gemma_weight buffer)"),
    },
    "LayerNorm.forward_hip": {
        "db27ae5a1d9551f8": _same(
            "0.5.11 - 0.5.23",
            frozenset({X_RESHAPED}),
            "x.reshape(-1, self.hidden_size) (:532): a view where one exists, strides kept",
        ),
    },
    "multimodal_gen RMSNorm.forward_aiter": {
        "b8db1f7f8a9c921a": _same(
            "0.5.12 - 0.5.23",
            frozenset({X_LAYOUT, ROWS_LAYOUT, WEIGHT_DTYPE}),
            "x and residual reshaped to (-1, n) and made contiguous, the weight cast to x's "
            "dtype, non-fp16/bf16 x to forward_native (multimodal_gen layernorm.py, 0.5.12 "
            ":189-228)",
        ),
    },
    "communicator._fused_rmsnorm_fp8_per_token_quant": {
        "f85b2f124c284213": _same("0.5.11 - 0.5.18", _NONE, "no check (:124 M, N = x.shape)"),
        "c5eb9ba2ddb0ce67": _same("0.5.19 - 0.5.20", _NONE, "no check (gfx1250: Triton group quant)"),
    },
    "add_norm._fused_rmsnorm_fp8_per_token_quant": {
        "c5eb9ba2ddb0ce67": _same("0.5.21 - 0.5.23", _NONE, "no check (gfx1250: Triton group quant)"),
    },
}


def upstream_of(target: str, fingerprint: str | None) -> Upstream | None:
    """The release row whose entry has this fingerprint, or None (then the guard checks everything)."""
    return UPSTREAM.get(target, {}).get(fingerprint or "")


def upstream_in_source(tree: ast.Module, target: str, attribute: str) -> tuple[str | None, Upstream | None]:
    """The fingerprint of ``attribute`` in a module's parsed source, and its release row (doctor, tests)."""
    node = source_scan.find(tree, attribute)
    digest = fingerprint(node) if node is not None else None
    return digest, upstream_of(target, digest)
