"""Source of the fast path for entries that normalize ``(rows, weight)`` pairs (MLA q / k, Triton quant).

As :mod:`~aiter_norm_guard.guard.codegen`, with the original's exact signature; each pair is
checked with its own width, the pairs after the first (optional: None passes) against the
first's row count, and the extra row tensors (a residual) against the first's shape; every
tensor's device where the kernel dereferences device pointers.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiter_norm_guard.guard.codegen import _ident, signature_text, weight_lookup
from aiter_norm_guard.kernels.needs import ANY, CONTIGUOUS, Needs


def _layout(t: str, needs: Needs) -> list[str]:
    if needs.layout == CONTIGUOUS:
        return [f"{t}.is_contiguous()"]
    if needs.layout == ANY:
        return [f"0 not in {t}.stride()"] if needs.positive_strides else []
    return [f"{t}.stride()[-1] == 1"]


def _pair(i: int, t: str, needs: Needs) -> list[str]:
    shape = "_s" if i == 0 else f"_s{i}"
    out = [f"len({shape} := {t}.shape) == 2"]
    if i == 0:
        out.append("(_m := _s[0])" if needs.nonempty else "((_m := _s[0]) or True)")
    elif needs.same_rows:
        out.append(f"{shape}[0] == _m")
    if needs.device:
        out += [f"{t}.is_cuda", f"_w{i}.is_cuda"]
    out += _layout(t, needs)
    out.append(f"_w{i}.numel() == {shape}[1]")
    if needs.weight_dtype:
        out.append(f"_w{i}.dtype is {t}.dtype")
    if needs.weight_contiguous:
        out.append(f"_w{i}.is_contiguous()")
    test = " and ".join(out)
    return [test] if i == 0 else [f"({t} is None or ({test}))"]


def pairs_fast_path_source(
    name: str,
    sig: inspect.Signature,
    namespace: dict[str, Any],
    pairs: tuple[tuple[str, str], ...],
    rows: tuple[str, ...],
    needs: Needs,
) -> str:
    """The guarded function: the original at once when every pair and row tensor already meets
    ``needs``, else the slow path."""
    params, call, slow_args = signature_text(sig, namespace)
    body: list[str] = []
    conds: list[str] = []
    for i, (t, w) in enumerate(pairs):
        body += weight_lookup(f"_w{i}", _ident(w), None)
        conds += _pair(i, _ident(t), needs)
    for r in (_ident(r) for r in rows):
        extra = [f"{r}.shape == _s"] if needs.same_rows else []
        extra += [f"{r}.dtype is {pairs[0][0]}.dtype"] if needs.same_rows and needs.rows_dtype else []
        extra += _layout(r, needs) + ([f"{r}.is_cuda"] if needs.device else [])
        if extra:
            conds.append(f"({r} is None or ({' and '.join(extra)}))")
    body.append(f"_safe = {' and '.join(conds)}")
    lines = [f"def {_ident(name)}({params}):", "    try:"]
    lines += [f"        {line}" for line in body]
    lines += ["    except Exception:", "        _safe = False"]
    lines += ["    if _safe:", f"        return _original({call})", f"    return _slow({slow_args})", ""]
    return "\n".join(lines)
