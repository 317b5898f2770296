"""Qwen3's fused decode (q / k norm + RoPE + KV-cache write) through sglang's own ``Qwen3Attention.forward``.

Run as a script in a fresh interpreter (world size 1, gloo) behind the emulated ROCm + aiter, whose
cache-write double addresses the KV cache as aiter does since #4531 / #4312 (through its strides).
Builds a real ``Qwen3Attention`` and a real ``MHATokenToKVPool`` (host memory playing the GPU's),
runs one decode step per case and prints one JSON line: per case and mode (``unguarded``,
``guarded``, ``unfused``: the release's own route with its fusion switched off), the outcome, q (the
attention's input), the whole K and V buffers and the layer output, and the kernels reached.

Not sglang's: the attention backend (:class:`CacheAttention`: stores K / V with the pool's
``set_kv_buffer`` when asked, as sglang's backends do, and attends over the cache's slots, so the
output depends on what the cache holds), aiter's GEMM as ``F.linear``, and rotary embeddings on
their ``forward_native`` (their HIP paths are sgl_kernel's).  The release's scale tensors are host
tensors (it builds them with ``device="cpu"``): marked so for the emulation.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

DT = torch.bfloat16
SLOTS, CONTEXT = 64, 6  # cache slots; tokens already in the cache before the decode step


class CacheAttention:
    """Decode attention over the cache: every written slot, GQA, softmax in fp32."""

    def __init__(self, pool: Any, context: torch.Tensor) -> None:
        self.token_to_kv_pool, self.context = pool, context

    def forward(
        self, q: Any, k: Any, v: Any, layer: Any, forward_batch: Any, save_kv_cache: bool = True, **_: Any
    ) -> torch.Tensor:
        loc = forward_batch.out_cache_loc
        if save_kv_cache and k is not None:
            self.token_to_kv_pool.set_kv_buffer(layer, loc, k, v, layer.k_scale, layer.v_scale)
        k_buf, v_buf = self.token_to_kv_pool.get_kv_buffer(layer.layer_id)
        slots = torch.cat([self.context, loc])
        keys, values = k_buf[slots].float(), v_buf[slots].float()
        if layer.k_scale is not None:
            keys, values = keys * float(layer.k_scale), values * float(layer.v_scale)
        h, kvh, d = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim
        qh = q.reshape(-1, h, d).float()
        keys = keys.repeat_interleave(h // kvh, 1)
        values = values.repeat_interleave(h // kvh, 1)
        scores = torch.einsum("thd,shd->hts", qh, keys) * layer.scaling
        out = torch.einsum("hts,shd->thd", scores.softmax(-1), values)
        return out.reshape(-1, h * d).to(q.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Any = None, otype: Any = None, **_: Any) -> torch.Tensor:
    out = torch.nn.functional.linear(x, weight, bias)
    return out if otype is None else out.to(otype)


def dense_on_one_process() -> None:
    """For a run of the release's own import (the GPU child, the benchmark): dense layers' GEMM as ``F.linear``
    (the stub module's ``tgemm``, and unquant's if bound already), model-parallel groups without pynccl or the
    custom all-reduce, sglang's distributed init on a world of one."""
    import aiter.tuned_gemm
    import sglang.srt.distributed.parallel_state as ps

    aiter.tuned_gemm.tgemm = types.SimpleNamespace(mm=linear)
    unquant = sys.modules.get("sglang.srt.layers.quantization.unquant")
    if unquant is not None and "tgemm" in vars(unquant):  # bound at its import, before this
        unquant.tgemm = aiter.tuned_gemm.tgemm
    original = ps.init_model_parallel_group
    ps.init_model_parallel_group = lambda *a, **k: original(
        *a, **{**k, "use_pynccl": False, "use_custom_allreduce": False}
    )
    sglang_setup.distributed()


def build(head_dim: int, mrope: bool, kv_dtype: torch.dtype, fp32_norms: bool, device: str = "cpu") -> tuple[Any, Any]:
    from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool
    from sglang.srt.models.qwen3 import Qwen3Attention

    from aiter_norm_guard.emulation.rocm import on_host

    scaling = {"rope_type": "default", "mrope_section": [head_dim // 8, head_dim * 3 // 16, head_dim * 3 // 16]}
    attn = Qwen3Attention(
        hidden_size=256,
        num_heads=4,
        num_kv_heads=2,
        layer_id=0,
        head_dim=head_dim,
        rope_scaling=scaling if mrope else None,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * (0.05 if p.dim() > 1 else 0.2) + (p.dim() == 1)).to(p.dtype))
    if fp32_norms:  # RL's fp32 weights: the norms' parameters in fp32, the activations bf16
        for n in (attn.q_norm, attn.k_norm):
            n.weight = torch.nn.Parameter(n.weight.data.float(), requires_grad=False)
    attn.to(device)  # the scale tensors are plain attributes: they stay on the host, as the release made them
    attn.rotary_emb._forward_method = attn.rotary_emb.forward_native
    for s in ("_fused_k_scale", "_fused_v_scale"):
        if hasattr(attn, s):
            on_host(getattr(attn, s))
    kw = {
        "size": SLOTS,
        "page_size": 1,
        "dtype": kv_dtype,
        "head_num": 2,
        "head_dim": head_dim,
        "layer_num": 1,
        "device": device,
        "enable_memory_saver": False,
    }
    if "enable_alt_stream" in inspect.signature(MHATokenToKVPool.__init__).parameters:
        kw["enable_alt_stream"] = False
    pool = MHATokenToKVPool(**kw)
    if kv_dtype != DT:  # an fp8 cache with the layer's own scales
        attn.attn.k_scale, attn.attn.v_scale = torch.tensor(0.5), torch.tensor(0.25)
        attn.attn.k_scale_float, attn.attn.v_scale_float = 0.5, 0.25
    return attn, pool


def decode(attn: Any, pool: Any, tokens: int, mrope: bool, device: str = "cpu") -> dict[str, Any]:
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode

    g = torch.Generator().manual_seed(2)
    k_buf, v_buf = pool.get_kv_buffer(0)
    for buf in (k_buf, v_buf):  # the context already in the cache (fp8: its raw bytes)
        raw = buf.view(torch.uint8) if buf.element_size() == 1 else buf
        raw.copy_(
            (torch.randn(raw.shape, generator=g) * 0.5).to(raw.dtype)
            if raw.dtype != torch.uint8
            else torch.randint(0, 100, raw.shape, generator=g, dtype=torch.uint8)
        )
    context = torch.arange(CONTEXT, device=device)
    loc = torch.arange(40, 40 + tokens, device=device)
    backend = CacheAttention(pool, context)
    pos = torch.arange(CONTEXT, CONTEXT + tokens, device=device)
    positions = torch.stack([pos, pos + 1, pos + 2]) if mrope else pos
    given = {
        "forward_mode": ForwardMode.DECODE,
        "batch_size": tokens,
        "input_ids": torch.zeros(tokens, dtype=torch.long, device=device),
        "req_pool_indices": torch.arange(tokens, device=device),
        "seq_lens": torch.full((tokens,), CONTEXT + 1, device=device),
        "out_cache_loc": loc,
        "seq_lens_sum": tokens * (CONTEXT + 1),
        "positions": positions,
        "attn_backend": backend,
    }
    fields = {f.name for f in dataclasses.fields(ForwardBatch)}
    fb = ForwardBatch(**{k: v for k, v in given.items() if k in fields})
    fb.token_to_kv_pool = pool
    hidden = torch.randn(tokens, 256, generator=g).to(DT).to(device)
    seen: dict[str, Any] = {}
    inner = backend.forward

    def spy(q: Any, *a: Any, **k: Any) -> Any:
        seen["q"] = q
        return inner(q, *a, **k)

    backend.forward = spy  # type: ignore[method-assign]
    try:
        from sglang.srt.model_executor.forward_context import ForwardContext, forward_context
    except ImportError:  # <= 0.5.15: the pool comes from the forward batch
        out = attn.forward(positions, hidden, fb)
    else:
        with forward_context(ForwardContext(attn_backend=backend)):
            out = attn.forward(positions, hidden, fb)
    return {"q": seen["q"].cpu(), "k_cache": k_buf.cpu(), "v_cache": v_buf.cpu(), "out": out.cpu()}


CASES = {  # name: (head_dim, mrope, kv dtype, fp32 norm weights, tokens)
    "mrope_3d_cache": (128, True, DT, False, 3),
    "mrope_fp8_kv_scaled": (128, True, torch.float8_e4m3fnuz, False, 3),
    "rope_1d": (128, False, DT, False, 3),
    "head_dim_512": (512, False, DT, False, 2),
    "head_dim_512_mrope": (512, True, DT, False, 2),
    "fp32_norm_weights": (128, True, DT, True, 3),
    "zero_tokens": (128, True, DT, False, 0),
}


def main() -> None:
    kernels = sglang_setup.rocm()
    sglang_setup.stub_non_norm_kernels()
    import aiter.tuned_gemm  # a stub module: give it the one non-norm kernel dense layers call

    aiter.tuned_gemm.tgemm = types.SimpleNamespace(mm=linear)
    sglang_setup.distributed()
    torch.set_default_dtype(DT)
    import sglang.srt.models.qwen3 as qwen3

    out: dict[str, Any] = {
        "fused_method": [
            m
            for m in ("forward_prepare_aiter_fused_mrope", "forward_prepare_aiter_fused")
            if m in vars(qwen3.Qwen3Attention)
        ]
    }
    for name, (head_dim, mrope, kv_dtype, fp32_norms, tokens) in CASES.items():
        got: dict[str, Any] = {}
        for mode in ("unguarded", "guarded", "unfused"):
            sglang_setup.guard("guarded" if mode == "unfused" else mode)
            kernels.reset()
            attn, pool = build(head_dim, mrope, kv_dtype, fp32_norms)
            got["fused_gate"] = bool(
                getattr(attn, "use_fused_qk_norm_mrope", False) or getattr(attn, "use_fused_qk_norm_rope", False)
            )
            if mode == "unfused":
                attn.use_fused_qk_norm_mrope = attn.use_fused_qk_norm_rope = False
            result = sglang_setup.outcome(lambda: tuple(decode(attn, pool, tokens, mrope).values()))  # noqa: B023
            result["kernels"] = [c.name for c in kernels.calls]
            got[mode] = result
        out[name] = got
    sglang_setup.report(out)
    if os.environ.get("LIST_IMPORTED"):  # scripts/gpu_bundle.py: every file this run imported
        print(json.dumps(sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})))


if __name__ == "__main__":
    main()
