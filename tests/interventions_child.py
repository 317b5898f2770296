"""Child-process bodies for the interventions tests (spawned); importing this imports no guard."""

from __future__ import annotations

from typing import Any


def record_and_report(times: int, entry: str, queue: Any) -> None:
    """Record ``times`` interventions on ``entry`` in this process; put this process's snapshot."""
    from aiter_norm_guard.guard import interventions

    for _ in range(times):
        interventions.record(entry, "zero rows")
    interventions.record(entry, "layout copy")
    if entry == "RMSNorm.forward_aiter":  # as a compiled graph counts: the mode label reaches Prometheus
        interventions.record(entry, "zero rows", interventions.COMPILED)
    queue.put(interventions.snapshot())
