"""Interventions: how often the guard changed a call (a copy, a native fallback, ...), per process.

The guard's slow paths call :func:`record` (never the fast path).  Counts are per process and
per ``(entry, reason)``; :func:`snapshot` reads them (``status()["interventions"]``).  Where
sglang exports Prometheus metrics (``--enable-metrics``: prometheus_client in multiprocess mode,
``PROMETHEUS_MULTIPROC_DIR`` set before its processes start), each record also increments
``aiter_norm_guard_interventions_total{entry,reason}``, which sglang's ``/metrics`` sums over
its processes.  prometheus_client is imported lazily, on the first record, and never required.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aiter_norm_guard import _log
from aiter_norm_guard._fork import ForkSafeLock, after_fork
from aiter_norm_guard._log import log_once

METRIC = "aiter_norm_guard_interventions"  # exported as ..._total
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"

_counts: dict[tuple[str, str], int] = {}
_lock = ForkSafeLock()
_counter: list[Any] = []  # [Counter] once made, [None] when there is none to make in this process


def record(entry: str, reason: str) -> None:
    """Count one intervention of the guard on ``entry`` for ``reason``; never raises."""
    try:
        key = (str(entry), str(reason))
        with _lock:
            first = key not in _counts
            _counts[key] = _counts.get(key, 0) + 1
            counter = _counter[0] if _counter else _make_counter()
        if first:
            log_once(
                f"{LOG_KEY}{key[0]}:{key[1]}",
                logging.INFO,
                "aiter_norm_guard: %s: %s (first time in this process; status()['interventions'] counts them)",
                *key,
            )
        if counter is not None:
            _inc(counter, key)
    except Exception:  # counting must never break a call
        pass


def snapshot() -> list[dict[str, Any]]:
    """This process's counts: ``[{"entry", "reason", "count"}, ...]``, sorted."""
    with _lock:
        items = sorted(_counts.items())
    return [{"entry": e, "reason": r, "count": n} for (e, r), n in items]


def reset() -> None:
    """Forget the counts of this process (tests); the Prometheus counter, once made, is kept."""
    with _lock:
        _counts.clear()


LOG_KEY = "intervention:"  #: the once-log's keys of first interventions


def _after_fork_in_child() -> None:
    """A forked child counts its own interventions, from zero, and logs its own first of each kind
    (the parent's once-log is not the child's); ``_lock`` is made anew there by itself."""
    _counts.clear()
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
                    f"prometheus_client was imported before {MULTIPROC_VAR} was set, so it is not in "
                    "multiprocess mode"
                )
            counter = Counter(METRIC, "Calls of an aiter norm entry the guard changed, by entry and reason",
                              ("entry", "reason"), registry=None)  # fmt: skip
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
    _counter[:] = [counter]
    return counter


def _inc(counter: Any, key: tuple[str, str]) -> None:
    try:
        counter.labels(*key).inc()
    except Exception as exc:
        log_once(
            "interventions-prometheus-inc",
            logging.WARNING,
            "aiter_norm_guard: could not increment %s_total (%s: %s); status()['interventions'] still counts",
            METRIC,
            type(exc).__name__,
            exc,
        )
