"""DeepSeek-V4's two-pool fp8 store through sglang's own ``_fp8_2buff_store`` (0.5.20+), behind the emulated ROCm
(gfx950, so the release's ``_HAS_GROUP_QUANT`` holds) whose aiter double reads memory as the kernel does.

Run as a script in a fresh interpreter; prints one JSON line: per case and mode (``unguarded``, ``guarded``),
the outcome (q_out, the K nope+scale bytes, the K rope half), the kernels reached, whether the double got the
caller's own k_weight, and the guard's interventions.  The arguments are built as
``DeepseekV4Attention._forward_prepare`` hands them (0.5.23 deepseek_v4.py:2316-2319 / :2367-2368, :2388-2410):
q the wq_b output ``[T, H * 512]``, kv the strided column slice ``qkv_a[:, q_lora_rank:]``, the kv_norm weight
(RMSNorm(512), model dtype), ``q_norm_weight`` None, int64 positions, a bf16 ``q_out`` (no ``q_rope_out``), and
the caller's packed K pair (``k_nope_out`` fp8, ``k_rope_out`` bf16) as verify / prefill pass them; no SWA ring.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

DT = torch.bfloat16
H, D, ROT, LORA, MAXPOS = 2, 512, 64, 128, 64


def inputs(tokens: int, kv_rows: int, weight: str) -> dict[str, Any]:
    g = torch.Generator().manual_seed(5)
    q = torch.randn(tokens, H * D, generator=g).to(DT)
    qkv_a = torch.randn(kv_rows, LORA + D, generator=g).to(DT)
    w = (torch.randn(D, generator=g) * 0.2 + 1).to(DT)
    if weight == "strided":  # the same values, every other element of a wider buffer
        wide = torch.zeros(2 * D, dtype=DT)
        wide[::2] = w
        w = wide[::2]
    elif weight == "fp32":
        w = w.float()
    freqs = torch.arange(MAXPOS).unsqueeze(1) * torch.rand(ROT // 2, generator=g)
    return {
        "q": q,
        "kv": qkv_a[:, LORA:],
        "q_norm_weight": None,
        "kv_norm_weight": w,
        "rms_eps": 1e-6,
        "rope_head_dim": ROT,
        "cos_cache": freqs.cos().to(DT),
        "sin_cache": freqs.sin().to(DT),
        "positions": torch.arange(3, 3 + tokens, dtype=torch.int64),
        "q_out": torch.zeros(tokens, H, D, dtype=DT),
        "swa_cache": None,
        "swa_rope_cache": None,
        "swa_loc": None,
        "k_nope_out": torch.zeros(tokens, 1, D, dtype=torch.float8_e4m3fnuz),
        "k_rope_out": torch.zeros(tokens, 1, ROT, dtype=DT),
        "q_rope_out": None,
    }


CASES = {  # name: (tokens, kv rows, k weight)
    "safe": (3, 3, "contiguous"),
    "zero_tokens": (0, 0, "contiguous"),
    "strided_k_weight": (3, 3, "strided"),
    "fp32_k_weight": (3, 3, "fp32"),
    "kv_rows_short": (3, 2, "contiguous"),
}


def main() -> None:
    kernels = sglang_setup.rocm(sglang_setup.GFX950)
    sglang_setup.stub_non_norm_kernels()
    import sglang.kernels.ops.attention.fused_qk_norm_rope_store as store

    from aiter_norm_guard.guard.interventions import snapshot

    out: dict[str, Any] = {"has_group_quant": bool(store._HAS_GROUP_QUANT)}
    for name, (tokens, kv_rows, weight) in CASES.items():
        got: dict[str, Any] = {}
        for mode in ("unguarded", "guarded"):
            sglang_setup.guard(mode)
            kernels.reset()
            a = inputs(tokens, kv_rows, weight)
            before = snapshot()

            def call(a: dict[str, Any] = a) -> tuple[torch.Tensor, ...]:
                return (store._fp8_2buff_store(**a), a["k_nope_out"], a["k_rope_out"])

            result = sglang_setup.outcome(call)
            result["kernels"] = [c.name for c in kernels.calls]
            result["own_k_weight"] = [c.tensors.get("k_weight") is a["kv_norm_weight"] for c in kernels.calls]
            result["own_kv"] = [c.tensors.get("kv") is a["kv"] for c in kernels.calls]
            result["interventions"] = _delta(before, snapshot())
            got[mode] = result
        out[name] = got
    sglang_setup.report(out)


def _delta(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, int]:
    """Interventions counted between two snapshots, ``entry: reason`` -> count."""
    b = {(r["entry"], r["reason"]): r["count"] for r in before}
    return {
        f"{r['entry']}: {r['reason']}": r["count"] - b.get((r["entry"], r["reason"]), 0)
        for r in after
        if r["count"] != b.get((r["entry"], r["reason"]), 0)
    }


if __name__ == "__main__":
    main()
