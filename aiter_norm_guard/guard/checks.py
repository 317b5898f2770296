"""What every guard's paths share: counting an intervention, finding a module's tensor where
``nn.Module`` keeps it, and logging one of the guard's own failures once."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard.guard.interventions import record as _record
from aiter_norm_guard.guard.interventions import traced_op

_traced_record = traced_op()  # made before any trace: a trace cannot define an op


def record(entry: str, reason: str) -> None:
    """Count an intervention (only on a slow path).  While ``torch.compile`` traces the call, the trace
    gets ``_traced_record``, which the compiled graph runs per call (``mode`` compiled, or captured in
    a CUDA graph); in eager, counted here (``mode`` eager, or captured while a CUDA graph captures)."""
    if torch.compiler.is_compiling():
        if _traced_record is not None:
            _traced_record(entry, reason)
        return
    _record(entry, reason)  # contained: counting never fails a call


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
