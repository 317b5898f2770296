"""Host time per call of Qwen3's fused decode prepare: the release's own method against the guarded one.

    python -P benchmarks/qwen3_decode.py            CPU: the emulated ROCm, the kernel double doing no work
    python3 -P benchmarks/qwen3_decode.py --device  a CUDA GPU: the release on its aiter branch, the Triton double

Not a test: nothing asserts a time.  One process, the two interleaved in blocks (perf_counter around
each block, the GPU synchronised at the block's end), median ratio over the blocks, per input class.
The goal (issue "Qwen3's fused decode path guarded"): a safe call (3-D contiguous cache, bf16 norm
weights: the guard's checks and its zero-copy view) costs <= 1.2x the release's own.  The fp8 cache
takes the unfused route guarded (more work by design: reported, no goal).  Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "--device" in sys.argv
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support"), str(ROOT / "tests" / "gpu")]


def setup() -> None:
    if DEVICE:
        from rocm_on_cuda import load

        load(modules=("sglang.srt.models.qwen3",))
    else:
        from aiter_norm_guard.emulation import AiterKernelDouble, EmulatedRocm

        EmulatedRocm(AiterKernelDouble(compute=False, record=False)).activate()
        import sglang_setup

        sglang_setup.stub_non_norm_kernels()
    import fused_qwen3

    fused_qwen3.dense_on_one_process()
    torch.set_default_dtype(torch.bfloat16)


def block(fn: Any, args: tuple[Any, ...], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(*args)
    if DEVICE:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def main() -> None:
    setup()
    import fused_qwen3
    from sglang.srt.models.qwen3 import Qwen3Attention

    import aiter_norm_guard
    from aiter_norm_guard.guard.registry import original_of

    aiter_norm_guard.install(force=True)
    name = next(
        m for m in ("forward_prepare_aiter_fused_mrope", "forward_prepare_aiter_fused") if m in vars(Qwen3Attention)
    )
    guarded = vars(Qwen3Attention)[name]
    own = original_of(guarded)
    device = "cuda" if DEVICE else "cpu"
    results: dict[str, Any] = {
        "release": aiter_norm_guard.status()["sglang"]["version"],
        "method": name,
        "device": torch.cuda.get_device_name() if DEVICE else "cpu (emulated)",
    }
    for label, kv in (
        ("safe: 3-D contiguous cache", torch.bfloat16),
        ("fp8 cache: the unfused route", torch.float8_e4m3fnuz),
    ):
        attn, pool = fused_qwen3.build(128, True, kv, False, device)
        tokens = 8
        seen: dict[str, Any] = {}

        def capture(a: Any, positions: Any, hidden: Any, fb: Any, *rest: Any, seen: dict[str, Any] = seen) -> Any:
            seen.update(positions=positions, hidden=hidden, fb=fb, rest=rest)
            return own(a, positions, hidden, fb, *rest)

        setattr(Qwen3Attention, name, capture)
        try:
            fused_qwen3.decode(attn, pool, tokens, True, device)  # one real step: the method's own arguments
        finally:
            setattr(Qwen3Attention, name, guarded)
        if not seen:
            results[label] = "the release keeps this off its fused path itself"
            continue
        args = (attn, seen["positions"], seen["hidden"], seen["fb"], *seen["rest"])
        try:  # 0.5.16+: the method finds the pool through the forward context
            from sglang.srt.model_executor import forward_context as fc
        except ImportError:  # <= 0.5.15: through the forward batch
            fc = None
        backend = types.SimpleNamespace(token_to_kv_pool=pool)
        with fc.forward_context(fc.ForwardContext(attn_backend=backend)) if fc else _null():
            for fn in (own, guarded):
                block(fn, args, 20)  # warm up
            ratios, times = [], {"release": [], "guarded": []}
            for _ in range(15):
                t_own, t_guarded = block(own, args, 50), block(guarded, args, 50)
                times["release"].append(t_own)
                times["guarded"].append(t_guarded)
                ratios.append(t_guarded / t_own)
        results[label] = {
            "release_us": round(statistics.median(times["release"]) * 1e6, 2),
            "guarded_us": round(statistics.median(times["guarded"]) * 1e6, 2),
            "ratio": round(statistics.median(ratios), 3),
        }
    print(json.dumps(results))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
