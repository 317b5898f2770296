"""What a guard checks per call, from its kernels' needs less what the release does itself.

Also the two helpers the guard's paths share: finding a module's tensor where ``nn.Module``
keeps it, and logging one of the guard's own failures once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Collection
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard.guard import codegen
from aiter_norm_guard.guard.interventions import record as _record
from aiter_norm_guard.guard.interventions import traced_op
from aiter_norm_guard.kernels.needs import (
    ANY,
    CONTIGUOUS,
    HOST,
    ROWS_LAYOUT,
    WEIGHT_DTYPE,
    WEIGHT_STRIDE,
    X_CONTIGUOUS_2D,
    X_LAYOUT,
    X_RESHAPED,
    ZERO_ROWS,
)

_traced_record = traced_op()  # made before any trace: a trace cannot define an op


def record(entry: str, reason: str) -> None:
    """Count an intervention (only on a slow path).  While ``torch.compile`` traces the call, the trace
    gets ``_traced_record``, which the compiled graph runs per call (``mode`` compiled, or captured in
    a CUDA graph); in eager, counted here (``mode`` eager, or captured while a CUDA graph captures)."""
    if torch.compiler.is_compiling():
        if _traced_record is not None:
            _traced_record(entry, reason)
        return
    try:
        _record(entry, reason)
    except Exception as exc:  # counting is observability: never the caller's failure
        own_failure(entry, exc, "the intervention went uncounted")


def fast_checks(guard: Any, done: Collection[str], rows: bool = False) -> codegen.Checks:
    """The per-call checks of ``guard``'s fast path for calls without (or, ``rows``, with) a residual."""
    n = guard.needs
    if n.layout == ANY or X_LAYOUT in done:
        x = codegen.X_ANY
    elif X_RESHAPED in done or n.layout == CONTIGUOUS:
        x = codegen.X_CONTIGUOUS  # sufficient; any other layout is judged on the slow path
    elif X_CONTIGUOUS_2D in done:
        x = codegen.X_RANK2
    else:
        x = codegen.X_ROWS
    zero = codegen.ZERO_NONE if not n.nonempty else codegen.ZERO_PAST_FIRST if ZERO_ROWS in done else codegen.ZERO_ALL
    return codegen.Checks(
        x=x,
        row_strided=guard.allow_row_stride and n.row_strided and not rows and x == codegen.X_ROWS,
        zero=zero,
        weight_dtype=n.weight_dtype and WEIGHT_DTYPE not in done,
        weight_stride=n.weight_contiguous and WEIGHT_STRIDE not in done,
        host_x=n.device and HOST not in done,
        host_others=True,
        rows_like=n.same_rows,
        rows_contiguous=n.layout != ANY and ROWS_LAYOUT not in done,
    )


def tensor_attr(obj: Any, names: tuple[str, ...]) -> torch.Tensor | None:
    """The first of ``names`` that is a tensor on ``obj`` (parameter, buffer or plain attribute; else,
    as the release reads it, the attribute itself: a parametrized weight, a property)."""
    for name in names:
        for store in (getattr(obj, "_parameters", None), getattr(obj, "_buffers", None), getattr(obj, "__dict__", {})):
            value = store.get(name) if isinstance(store, dict) else None
            if isinstance(value, torch.Tensor):
                return value
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return None


def own_failure(target: str, exc: BaseException, then: str) -> None:
    """Log one of the guard's own failures, once per distinct failure (type and place), and ``then``:
    what the call did instead."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log_once(
        f"own-failure:{target}:{type(exc).__name__}:{where}",
        logging.WARNING,
        "aiter_norm_guard: internal error in the guard of %s (%s: %s at %s); %s",
        target,
        type(exc).__name__,
        exc,
        where,
        then,
    )
