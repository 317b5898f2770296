"""Interventions: how often the guard changed a call (a copy, a native fallback, ...), per process.

The guard's slow paths call :func:`record` (never the fast path).  Counts are per process and
per ``(entry, reason, mode)``; :func:`snapshot` reads them (``status()["interventions"]``).  Where
sglang exports Prometheus metrics (``--enable-metrics``: prometheus_client in multiprocess mode,
``PROMETHEUS_MULTIPROC_DIR`` set before its processes start), each record also increments
``aiter_norm_guard_interventions_total{entry,reason,mode}``, which sglang's ``/metrics`` sums over
its processes.  prometheus_client is imported lazily, on the first record, and never required.

``mode`` says what one count stands for:

- ``eager``: one call the guard changed, as it ran;
- ``compiled``: one call of a ``torch.compile`` graph the guard changed: the trace keeps
  :func:`traced_op` (a side-effecting custom op, no tensors, nothing on the device) on the route the
  guard chose, and the op counts each time the compiled graph runs;
- ``captured``: one CUDA-graph capture of a call the guard changed (eager or compiled): a replay
  runs the captured kernels and no Python, so each replay repeats the change uncounted.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from aiter_norm_guard import _log, _state
from aiter_norm_guard._fork import ForkSafeLock, after_fork
from aiter_norm_guard._log import contained, log_once

METRIC = "aiter_norm_guard_interventions"  # exported as ..._total
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
EAGER, COMPILED, CAPTURED = "eager", "compiled", "captured"  #: the ``mode`` label's values
OP_NAMESPACE, OP_NAME = "aiter_norm_guard", "intervened"

_lock = ForkSafeLock()


@contained("interventions-record", "an intervention went uncounted")  # counting must never break a call
def record(entry: str, reason: str, mode: str | None = None) -> None:
    """Count one intervention of the guard on ``entry`` for ``reason``; never raises.  ``mode``: see the
    module's doc; None: ``captured`` while this thread's CUDA stream is capturing a graph, else ``eager``."""
    key = (str(entry), str(reason), str(mode or _eager_mode()))
    with _lock:
        first = key not in _state.COUNTS
        _state.COUNTS[key] = _state.COUNTS.get(key, 0) + 1
        counter = _state.COUNTER[0] if _state.COUNTER else _make_counter()
    if first:
        log_once(
            f"{LOG_KEY}{key[0]}:{key[1]}:{key[2]}",
            logging.INFO,
            "aiter_norm_guard: %s: %s (first time in this process, mode %s; status()['interventions'] counts them)",
            *key,
        )
    if counter is not None:
        _inc(counter, key)


def snapshot() -> list[dict[str, Any]]:
    """This process's counts: ``[{"entry", "reason", "count", "mode"}, ...]``, sorted."""
    with _lock:
        items = sorted(_state.COUNTS.items())
    return [{"entry": e, "reason": r, "count": n, "mode": m} for (e, r, m), n in items]


def _eager_mode() -> str:
    """``captured`` while the current CUDA stream captures a graph, else ``eager`` (never initialises CUDA)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing():
            return CAPTURED
    except Exception:  # a torch without CUDA support, or one mid-teardown
        pass
    return EAGER


def _counted_by_the_graph(entry: str, reason: str) -> None:
    """The op's body: runs each time a compiled graph that kept it runs (once, at capture, in a CUDA graph)."""
    record(entry, reason, CAPTURED if _eager_mode() == CAPTURED else COMPILED)


def traced_op() -> Any:
    """``torch.ops.aiter_norm_guard.intervened.default(entry, reason)``: what the guard's ``record`` puts
    in a ``torch.compile`` trace, so the compiled graph counts each call it runs (see the module's doc).
    A custom op with no tensors, marked side-effecting so no pass removes it; made once per process,
    before any trace (the guard makes it on import); None where this torch cannot make one."""
    if _state.TRACED_OP:
        return _state.TRACED_OP[0]
    op = None
    try:
        import torch

        ns = getattr(torch.ops, OP_NAMESPACE)
        if not hasattr(ns, OP_NAME):  # (a reloaded module reuses the op: its body looks this module up)
            made = torch.library.custom_op(f"{OP_NAMESPACE}::{OP_NAME}", _op_body, mutates_args=())
            made.register_fake(_no_count)  # tracing counts nothing: the graph counts when it runs
            _state.OP_LIBRARIES.append(made)
        op = getattr(ns, OP_NAME).default
        try:
            torch.fx.node.has_side_effect(op)  # no dead-code elimination of an op without outputs
        except Exception:
            pass
    except Exception as exc:
        log_once(
            "interventions-op",
            logging.WARNING,
            "aiter_norm_guard: interventions under torch.compile are not counted (%s: %s)",
            type(exc).__name__,
            exc,
        )
    _state.TRACED_OP[:] = [op]
    return op


def _op_body(entry: str, reason: str) -> None:
    sys.modules[__name__]._counted_by_the_graph(entry, reason)


def _no_count(entry: str, reason: str) -> None:
    return None


def reset() -> None:
    """Forget the counts of this process (tests); the Prometheus counter, once made, is kept."""
    with _lock:
        _state.COUNTS.clear()


LOG_KEY = "intervention:"  #: the once-log's keys of first interventions


def _after_fork_in_child() -> None:
    """A forked child counts its own interventions, from zero, and logs its own first of each kind
    (the parent's once-log is not the child's); ``_lock`` is made anew there by itself."""
    _state.COUNTS.clear()
    _log.forget(LOG_KEY)


after_fork(_after_fork_in_child)


def _make_counter() -> Any:
    """The Prometheus counter, made once per process under ``_lock``; None where there is none."""
    counter = None
    if os.environ.get(MULTIPROC_VAR):
        try:
            from prometheus_client import Counter, values

            if not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError(
                    f"prometheus_client was imported before {MULTIPROC_VAR} was set, so it is not in multiprocess mode"
                )
            counter = Counter(
                METRIC,
                "Calls of an aiter norm entry the guard changed, by entry, reason and mode "
                "(eager / compiled: per call; captured: per CUDA-graph capture)",
                ("entry", "reason", "mode"),
                registry=None,
            )
        except Exception as exc:
            log_once(
                "interventions-prometheus",
                logging.WARNING,
                "aiter_norm_guard: interventions are not exported to Prometheus (%s: %s); "
                "status()['interventions'] still counts them",
                type(exc).__name__,
                exc,
            )
            counter = None
    _state.COUNTER[:] = [counter]
    return counter


@contained(
    "interventions-prometheus-inc", f"could not increment {METRIC}_total; status()['interventions'] still counts"
)
def _inc(counter: Any, key: tuple[str, str, str]) -> None:
    counter.labels(*key).inc()
