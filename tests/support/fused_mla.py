"""MLA's fused q / k RMSNorm through sglang's own ``forward_absorb_(rocm_)prepare`` on CPU.

Run as a script in a fresh interpreter (world size 1, gloo): builds a real ``DeepseekV2AttentionMLA``
from a tiny DeepSeek-V2 config behind the emulated ROCm + aiter (gfx942: the bf16 branch, which calls
the module global ``fused_qk_rmsnorm_bf16`` on the column slices ``q`` / ``k_nope`` of the packed
latent) and runs the release's prepare method on a latent it is handed.  Not sglang's: the attention
TP context is replaced by one that hands out that latent (``fused_qkv_a_proj_with_mqa``'s output in
a real forward), and ``q_b_proj`` (a GEMM) by a probe that stops the method there: the normalized
``q`` is its input, ``k_nope`` is read from the method's frame.  The reference is the same method
on its own non-aiter branch (``_use_aiter`` off in that module) with the norms on ``forward_native``.
Prints one JSON line.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sglang_setup

DT = torch.bfloat16
METHODS = "sglang.srt.models.deepseek_common.attention_forward_methods"
Q_LORA, KV_LORA, ROPE, T = 48, 32, 16, 5
YARN = {
    "rope_type": "deepseek_yarn",
    "factor": 1.0,
    "original_max_position_embeddings": 256,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}  # what DeepSeek configs carry; sglang's CPU rope needs it


class Stop(Exception):
    """Raised by the q_b_proj probe: the norms are done."""


def build() -> tuple[Any, Any, Any]:
    from sglang.srt.models.deepseek_v2 import DeepseekV2AttentionMLA
    from transformers import PretrainedConfig

    dims = {
        "hidden_size": 64,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": ROPE,
        "v_head_dim": 16,
        "q_lora_rank": Q_LORA,
        "kv_lora_rank": KV_LORA,
        "max_position_embeddings": 256,
    }
    cfg = PretrainedConfig(
        **dims,
        num_attention_heads=2,
        rms_norm_eps=1e-6,
        architectures=["DeepseekV2ForCausalLM"],
        num_hidden_layers=1,
        vocab_size=128,
        torch_dtype="bfloat16",
    )
    attn = DeepseekV2AttentionMLA(cfg, **dims, num_heads=2, layer_id=0, rope_scaling=YARN)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in (attn.q_a_layernorm, attn.kv_a_layernorm):
            norm.weight.copy_((1 + 0.1 * torch.randn(norm.weight.shape, generator=g)).to(norm.weight.dtype))
    for name in ("forward_mla_rocm", "forward_mla"):
        try:
            module = importlib.import_module(f"{METHODS}.{name}")
        except ModuleNotFoundError:
            continue
        for cls in vars(module).values():
            for method in ("forward_absorb_rocm_prepare", "forward_absorb_prepare"):
                if isinstance(cls, type) and method in vars(cls) and "fused_qk_rmsnorm_bf16" in vars(module):
                    return attn, module, vars(cls)[method]
    raise SystemExit("no forward_absorb_(rocm_)prepare calling fused_qk_rmsnorm_bf16 in this sglang")


def prepare_norms(attn: Any, module: Any, prepare: Any, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The method's normalized (q, k_nope), as it hands them on."""
    seen: dict[str, torch.Tensor] = {}

    def probe(q: torch.Tensor, *a: Any, **k: Any) -> Any:
        seen["q"] = q
        raise Stop

    module.get_attn_tp_context = lambda: types.SimpleNamespace(fetch_qkv_latent=lambda: latent)
    attn.q_b_proj.forward = probe
    positions = torch.arange(latent.shape[0])
    try:
        prepare(attn, positions, torch.zeros(latent.shape[0], 64, dtype=DT), types.SimpleNamespace(), None)
    except Stop as stop:
        tb = stop.__traceback__
        while tb is not None and tb.tb_frame.f_code is not prepare.__code__:
            tb = tb.tb_next
        assert tb is not None, "the probe was not reached from the prepare method"
        k_nope = tb.tb_frame.f_locals["k_nope"]
        return seen["q"], k_nope.squeeze(1)
    raise AssertionError("the prepare method never reached q_b_proj")


def main() -> None:
    kernels = sglang_setup.rocm()
    import aiter_norm_guard  # noqa: F401  (installs the guard before sglang's modules import)

    sglang_setup.stub_non_norm_kernels()
    sglang_setup.distributed()
    torch.set_default_dtype(DT)  # as sglang's model loader does
    attn, module, prepare = build()
    assert module._use_aiter, "sglang did not take its aiter route"
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(T, Q_LORA + KV_LORA + ROPE, generator=g).to(DT)
    w_kv = attn.kv_a_layernorm.weight.data
    cases = {  # name: (latent, kv_a_layernorm weight)
        "safe": (latent, w_kv),
        "zero_rows": (latent[:0], w_kv),
        "short_k_weight": (latent, w_kv[: KV_LORA // 2].clone()),
        "fp32_k_weight": (latent, w_kv.float()),
    }
    out: dict[str, Any] = {
        "module": module.__name__,
        "method": prepare.__qualname__,
        "bound": getattr(module.fused_qk_rmsnorm_bf16, "__module__", "?"),
    }
    norms = (attn.q_a_layernorm, attn.kv_a_layernorm)
    for name, (lat, w) in cases.items():
        attn.kv_a_layernorm.weight = torch.nn.Parameter(w, requires_grad=False)
        got: dict[str, Any] = {}
        for mode in ("unguarded", "guarded", "native"):
            sglang_setup.guard(mode)
            kernels.reset()
            saved = module._use_aiter, [n._forward_method for n in norms]
            if mode == "native":  # the method's own non-aiter branch, sglang's native norms
                module._use_aiter = False
                for n in norms:
                    n._forward_method = n.forward_native
            try:
                got[mode] = sglang_setup.outcome(lambda lat=lat: prepare_norms(attn, module, prepare, lat))  # type: ignore[misc]
            finally:
                module._use_aiter = saved[0]
                for n, fm in zip(norms, saved[1], strict=True):
                    n._forward_method = fm
            got[mode]["kernels"] = [c.name for c in kernels.calls]
        out[name] = got
    out["stubbed_norm_kernels"] = sglang_setup.stubbed_norm_kernels()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
