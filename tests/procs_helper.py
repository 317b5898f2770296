"""Child-process bodies for the process tests. Importing this module does not import the guard."""

from __future__ import annotations

import json
import sys
from typing import Any


def guard_report_then_run_views() -> dict[str, Any]:
    """In a fresh process: was the guard there before sglang's layernorm? Do the bug's views work?"""
    before = {
        "guard_loaded": "aiter_norm_guard" in sys.modules,
        "layernorm_loaded": "sglang.srt.layers.layernorm" in sys.modules,
    }
    import os

    import torch

    switch = os.environ.get("AITER_NORM_GUARD")
    if not before["guard_loaded"]:  # the emulation is part of the package: its import must not be the install
        os.environ["AITER_NORM_GUARD"] = "0"
    try:
        from aiter_norm_guard import _state
        from aiter_norm_guard.emulation import EmulatedRocm, MemoryAccessFault
    finally:
        if switch is None:
            os.environ.pop("AITER_NORM_GUARD", None)
        else:
            os.environ["AITER_NORM_GUARD"] = switch
    if not before["guard_loaded"]:  # what the operator's environment installs is what this process reports
        _state.SOURCES[:] = [s for s in _state.SOURCES if s != "import"]
        _state.LAST_FLAG.clear()
    EmulatedRocm().activate()
    import sglang.srt.layers.layernorm as ln

    qkv = torch.randn(2048, 6144, dtype=torch.bfloat16)
    views = {"q": qkv[:, :4096].view(2048, 32, 128), "k": qkv[:, 4096:5120].view(2048, 8, 128)}
    norm = ln.RMSNorm(128).to(torch.bfloat16)
    outcomes = {}
    for name, v in views.items():
        try:
            torch.testing.assert_close(norm(v), norm.forward_native(v))
            outcomes[name] = "ok"
        except MemoryAccessFault:
            outcomes[name] = "fault"
    guard = sys.modules.get("aiter_norm_guard")
    status = guard.status() if guard is not None else None
    return {
        **before,
        "outcomes": outcomes,
        "sources": status["sources"] if status else [],
        "children_inherit": status["children"]["inherit"] if status else None,
    }


def spawn_target(queue: Any) -> None:
    queue.put(guard_report_then_run_views())


if __name__ == "__main__":
    print(json.dumps(guard_report_then_run_views()))
