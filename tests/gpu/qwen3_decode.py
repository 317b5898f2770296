"""Qwen3's fused decode on the GPU: a real ``Qwen3Attention.forward`` and ``MHATokenToKVPool`` of the release
on CUDA, the fused kernel the Triton double of aiter HEAD (``aiter_triton``: the cache read through its
strides).  Run as a child: ``qwen3_decode.py MODE`` (``unguarded`` / ``guarded``); prints one JSON line with,
per case, max differences of q, the K and V buffers and the output against the release's unfused route
(its fusion switched off), and the kernels reached.  The cases and the model code are tests/support/fused_qwen3.py's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "support")]
from rocm_on_cuda import load  # noqa: E402

LN, _ = load(modules=("sglang.srt.models.qwen3",))
import fused_qwen3  # noqa: E402
import sglang_setup  # noqa: E402

import aiter_norm_guard  # noqa: E402


def main() -> None:
    mode = sys.argv[1]
    fused_qwen3.dense_on_one_process()
    torch.set_default_dtype(fused_qwen3.DT)
    out = {}
    for name in ("mrope_3d_cache", "fp32_norm_weights", "rope_1d"):
        head_dim, mrope, kv, fp32, tokens = fused_qwen3.CASES[name]
        got = {}
        for run in (mode, "unfused"):
            sglang_setup.guard("guarded" if run == "unfused" else run)
            attn, pool = fused_qwen3.build(head_dim, mrope, kv, fp32, "cuda")
            gate = bool(
                getattr(attn, "use_fused_qk_norm_mrope", False) or getattr(attn, "use_fused_qk_norm_rope", False)
            )
            if run == "unfused":
                attn.use_fused_qk_norm_mrope = attn.use_fused_qk_norm_rope = False
            got[run] = fused_qwen3.decode(attn, pool, tokens, mrope, "cuda")
            torch.cuda.synchronize()
        diffs = [
            float((a.float() - b.float()).abs().max())
            for a, b in zip(got[mode].values(), got["unfused"].values(), strict=True)
        ]
        out[name] = {"fused_gate": gate, "max_diff": dict(zip(("q", "k_cache", "v_cache", "out"), diffs, strict=True))}
    out["interventions"] = aiter_norm_guard.status()["interventions"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
