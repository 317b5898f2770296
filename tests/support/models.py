"""sglang 0.5.10's real model code on CPU behind the emulated ROCm + aiter: GLM-4, Step-3.5, Hunyuan CLA.

Run as a script (``python models.py``) in a fresh interpreter: it prints one JSON line with,
per case, how sglang's own forward ended on the aiter path (guarded or not, as the
environment says) and how it compares with the same model whose norms run ``forward_native``.

What is not sglang's own code here, none of it a norm: the kernel double (the emulation's),
``stubs`` (other aiter / sgl_kernel names, import-level), aiter's GEMM as ``F.linear``
(``UnquantizedLinearMethod`` calls ``aiter.tuned_gemm.tgemm.mm`` on ROCm), the attention
backend (:class:`CpuSdpaBackend`: causal GQA through SDPA, no KV cache), and rotary /
``SiluAndMul`` run through their ``forward_native`` (their HIP paths call sgl_kernel).
Distributed: gloo, world size 1, TP 1; the 0-token batch is ``ForwardMode.IDLE``, what an
idle DP-attention rank runs.
"""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stubs

Tensor = torch.Tensor


def setup(dtype: torch.dtype = torch.bfloat16) -> Any:
    """Emulated ROCm, stubs, gloo world of 1, sglang TP=1, global server args."""
    from aiter_norm_guard.emulation import EmulatedRocm

    EmulatedRocm().activate()
    import aiter_norm_guard  # noqa: F401  (installs the guard unless AITER_NORM_GUARD=0)

    stubs.install()
    import aiter.tuned_gemm  # a stub module: give it the one non-norm kernel dense layers call

    aiter.tuned_gemm.tgemm = types.SimpleNamespace(mm=_linear)
    stubs.platform_shims()
    from sglang.srt.distributed import init_distributed_environment, initialize_model_parallel
    from sglang.srt.layers.dp_attention import initialize_dp_attention
    from sglang.srt.layers.moe import initialize_moe_config
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    server_args = ServerArgs(model_path="dummy", device="cpu")  # "dummy" skips __post_init__ probing
    set_global_server_args_for_scheduler(server_args)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    init_distributed_environment(
        backend="gloo", world_size=1, rank=0, local_rank=0, distributed_init_method=f"tcp://127.0.0.1:{port}"
    )
    initialize_model_parallel(tensor_model_parallel_size=1)
    initialize_dp_attention(server_args, types.SimpleNamespace(hidden_size=64, dtype=dtype))
    initialize_moe_config(server_args)
    stubs.freeze()
    torch.set_default_dtype(dtype)  # as sglang's loader does
    return server_args


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, otype: Any = None, **_: Any) -> Tensor:
    out = torch.nn.functional.linear(x, weight, bias)
    return out if otype is None else out.to(otype)


class CpuSdpaBackend:
    """Stand-in for ``forward_batch.attn_backend``: causal GQA over one sequence, no KV cache."""

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, layer: Any, forward_batch: Any, save_kv_cache: bool = True, **_: Any
    ) -> Tensor:
        h, kvh = layer.tp_q_head_num, layer.tp_k_head_num
        q = q.reshape(-1, h, layer.qk_head_dim).transpose(0, 1)
        k = k.reshape(-1, kvh, layer.qk_head_dim).repeat_interleave(h // kvh, 1).transpose(0, 1)
        v = v.reshape(-1, kvh, layer.v_head_dim).repeat_interleave(h // kvh, 1).transpose(0, 1)
        o = torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), is_causal=True, scale=layer.scaling
        )
        return o.transpose(0, 1).reshape(-1, h * layer.v_head_dim).to(q.dtype)


def forward_batch(n_tokens: int) -> Any:
    """A real ForwardBatch: EXTEND for n > 0, IDLE (an idle DP-attention rank) for n == 0."""
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode

    live = int(bool(n_tokens))
    return ForwardBatch(
        forward_mode=ForwardMode.EXTEND if n_tokens else ForwardMode.IDLE,
        batch_size=live,
        input_ids=torch.randint(0, 128, (n_tokens,), generator=torch.Generator().manual_seed(1)),
        req_pool_indices=torch.tensor([0], dtype=torch.int64)[:live],
        seq_lens=torch.tensor([n_tokens], dtype=torch.int64)[:live],
        out_cache_loc=torch.arange(n_tokens),
        seq_lens_sum=n_tokens,
        positions=torch.arange(n_tokens),
        attn_backend=CpuSdpaBackend(),
    )


def _norms() -> tuple[type, ...]:
    from sglang.srt.layers import layernorm

    return (layernorm.RMSNorm, layernorm.GemmaRMSNorm, layernorm.LayerNorm)


def prepare(model: Any, seed: int = 0) -> Any:
    """Seeded random weights; non-norm platform ops (rotary, SiluAndMul) to ``forward_native``."""
    from sglang.srt.layers.rotary_embedding import RotaryEmbedding
    from sglang.srt.layers.utils import MultiPlatformOp

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            base = 1.0 if isinstance(owner, _norms()) and "Gemma" not in type(owner).__name__ else 0.0
            loader = getattr(p, "weight_loader", None) if isinstance(owner, _norms()) else None
            value = base + 0.1 * torch.randn(p.shape, generator=g)
            if loader is not None:
                loader(p, value.to(p.dtype))
            else:
                p.copy_(value)
    for m in model.modules():
        if isinstance(m, RotaryEmbedding):
            m._forward_method = _rope_native(m)
        elif isinstance(m, MultiPlatformOp) and not isinstance(m, _norms()):
            m._forward_method = m.forward_native
    return model.eval()


def _rope_native(rope: Any) -> Callable[..., Any]:
    """``forward_native``, except 0 tokens pass through (its ``view(0, -1, head)`` is ambiguous)."""

    def forward(positions: Tensor, query: Tensor, key: Tensor, *a: Any, **k: Any) -> Any:
        return (query, key) if positions.numel() == 0 else rope.forward_native(positions, query, key, *a, **k)

    return forward


def run_native_norms(model: Any, call: Callable[[], Any]) -> Any:
    """``call()`` with every sglang norm in ``model`` on its ``forward_native`` (the reference)."""
    saved = [(m, m._forward_method) for m in model.modules() if isinstance(m, _norms())]
    try:
        for m, _ in saved:
            m._forward_method = m.forward_native
        return call()
    finally:
        for m, fm in saved:
            m._forward_method = fm


#: The small dense model every case builds: two layers, four heads of 16, hidden 64.
SIZES = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "head_dim": 16,
    "max_position_embeddings": 256,
}


def whole(model: Any) -> tuple[Any, Callable[[int], Any]]:
    """``model`` prepared, and its forward on ``n`` tokens of a forward batch."""
    model = prepare(model)

    def call(n: int) -> Any:
        fb = forward_batch(n)
        return model(fb.input_ids, fb.positions, fb)

    return model, call


def glm4() -> tuple[Any, Callable[[int], Any]]:
    from sglang.srt.models.glm4 import Glm4Model
    from transformers import Glm4Config

    cfg = Glm4Config(**SIZES, num_key_value_heads=2)
    return whole(Glm4Model(cfg))


def step3p5() -> tuple[Any, Callable[[int], Any]]:
    from sglang.srt.configs.step3p5 import Step3p5Config
    from sglang.srt.models.step3p5 import Step3p5Model

    n_layers = SIZES["num_hidden_layers"]
    cfg = Step3p5Config(
        **SIZES,
        num_attention_groups=2,
        moe_layers_enum="99",  # dense MLPs only: MoE would need aiter's fused_moe (not a norm; stubbed)
        layer_types=["full_attention"] * n_layers,
        yarn_only_types=[],
        rope_theta=[10000.0] * n_layers,
        partial_rotary_factors=[1.0] * n_layers,
        swiglu_limits_shared=[0] * n_layers,
        swiglu_limits=[0] * n_layers,
        use_head_wise_attn_gate=True,
        need_fp32_gate=False,
        moe_router_scaling_factor=1.0,
        use_moe_router_bias=False,
    )
    return whole(Step3p5Model(cfg))


def hunyuan_cla() -> tuple[Any, Callable[[int], Any]]:
    """Two decoder layers with cross-layer attention: layer 0 (self) hands ``kv_states`` to layer 1
    (cross), whose ``query_layernorm`` gets ``q.view(-1, heads, head_dim).contiguous()``.  (The
    released ``HunYuanModel.forward`` never passes kv_states, so the whole model asserts first.)"""
    from sglang.srt.models.hunyuan import HunYuanDecoderLayer
    from transformers import HunYuanDenseV1Config

    cfg = HunYuanDenseV1Config(**SIZES, num_key_value_heads=2)
    cfg.use_qk_norm, cfg.use_cla, cfg.cla_share_factor = True, True, 2
    layers = prepare(torch.nn.ModuleList([HunYuanDecoderLayer(cfg, layer_id=i, prefix=f"layers.{i}") for i in (0, 1)]))
    assert [layer.self_attn.attention_type for layer in layers] == ["self", "cross"]
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(2)).to(torch.get_default_dtype())

    def call(n: int) -> Any:
        fb = forward_batch(n)
        h, res, kv = layers[0](fb.positions, x[:n], fb, None)
        return layers[1](fb.positions, h, fb, res, kv_states=kv)[:2]

    return layers, call


def _tensors(out: Any) -> list[Tensor]:
    return [t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, Tensor)]


def outcome(model: Any, call: Callable[[int], Any], n: int) -> dict[str, Any]:
    """How ``call(n)`` ends on the aiter path, and its distance to the native-norm reference."""
    with torch.no_grad():
        ref = _tensors(run_native_norms(model, lambda: call(n)))
        try:
            got = _tensors(call(n))
        except Exception as exc:
            return {"outcome": type(exc).__name__, "detail": str(exc)[:200]}
    same_shape = [tuple(g.shape) for g in got] == [tuple(r.shape) for r in ref]
    diff = (
        max(
            ((g.float() - r.float()).abs().max().item() for g, r in zip(got, ref, strict=False) if g.numel()),
            default=0.0,
        )
        if same_shape
        else float("inf")
    )
    return {
        "outcome": "ok",
        "shapes": [list(g.shape) for g in got],
        "max_abs_diff_vs_native": diff,
        "digest": [float(g.float().sum()) for g in got],
    }


def main() -> None:
    setup()
    import aiter_norm_guard

    results: dict[str, Any] = {}
    cases = (("glm4", glm4, (5, 0)), ("step3p5", step3p5, (5, 0)), ("hunyuan_cla", hunyuan_cla, (5,)))
    for name, builder, sizes in cases:
        torch.manual_seed(0)
        model, call = builder()
        for n in sizes:
            results[f"{name}:{n}"] = outcome(model, call, n)
    results["guarded"] = sorted(t["name"] for t in aiter_norm_guard.status()["targets"] if t["patched"])
    results["stubbed_norm_kernels"] = stubs.stubbed_norm_kernels()
    results["stub_calls_after_freeze"] = [c for c in stubs.CALLED if c[1] == "frozen"]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
