"""Entries of ``(rows, weight)`` pairs (MLA's fused q / k RMSNorm, aiter's Triton RMSNorm + quant): the guard
built from their target declarations around the emulation's doubles, which read the same contracts.

The hazards an adversarial review found there: a host tensor in any pair but the first's rows, and a
q of another rank where aiter sends m >= 16384 rows to its HIP rmsnorm (n = size(1)).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aiter_norm_guard.emulation import AiterKernelDouble, MemoryAccessFault, on_host
from aiter_norm_guard.emulation.fused import FusedDouble
from aiter_norm_guard.guard.fallbacks import qk_rmsnorm_native
from aiter_norm_guard.guard.guard import Guard
from aiter_norm_guard.targets.attention import MLA_QK_RMSNORM
from aiter_norm_guard.targets.fused_quant import TRITON_QUANT
from conftest import outcome

BF = torch.bfloat16


@pytest.fixture
def qk(kernels: AiterKernelDouble) -> tuple[Any, Any]:
    double = FusedDouble(kernels)

    def fused_qk_rmsnorm_bf16(q: Any, q_weight: Any, q_eps: float, k: Any, k_weight: Any, k_eps: float) -> Any:
        return double.fused_qk_rmsnorm(q, q_weight, q_eps, k, k_weight, k_eps)

    return fused_qk_rmsnorm_bf16, Guard(fused_qk_rmsnorm_bf16, MLA_QK_RMSNORM).build()


def _qk_args(rows: int = 4) -> list[Any]:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(rows, 48, generator=g).to(BF), torch.randn(rows, 32, generator=g).to(BF)
    wq, wk = (1 + 0.1 * torch.randn(48, generator=g)).to(BF), (1 + 0.1 * torch.randn(32, generator=g)).to(BF)
    return [q, wq, 1e-6, k, wk, 1e-5]


@pytest.mark.parametrize("where", [1, 3, 4])  # q_weight, k, k_weight
def test_mla_a_host_tensor_in_any_pair_goes_to_the_native_norms(
    where: int, qk: tuple[Any, Any], kernels: AiterKernelDouble
) -> None:
    unguarded, guarded = qk
    args = _qk_args()
    args[where] = on_host(args[where].clone())
    assert outcome(unguarded, *args) is MemoryAccessFault
    kernels.reset()
    got = guarded(*args)
    assert kernels.calls == []
    bound = dict(zip(("q", "q_weight", "q_eps", "k", "k_weight", "k_eps"), args, strict=True))
    for a, b in zip(got, qk_rmsnorm_native(unguarded, bound, "host tensor"), strict=True):
        assert torch.equal(a, b)


def test_mla_q_of_another_rank_at_the_hip_routes_row_count_goes_to_the_native_norms(
    qk: tuple[Any, Any], kernels: AiterKernelDouble
) -> None:
    """From m = 16384 rows aiter calls its HIP rmsnorm (n = size(1)), before the fused kernel's 2-D check."""
    unguarded, guarded = qk
    kernels.compute = True
    g = torch.Generator().manual_seed(1)
    q = torch.randn(16384, 2, 24, generator=g).to(BF)  # rank 3: the HIP kernel reads n = 2, m = numel / 2
    args = [
        q,
        torch.ones(24, dtype=BF),
        1e-6,
        torch.randn(16384, 32, generator=g).to(BF),
        torch.ones(32, dtype=BF),
        1e-6,
    ]
    assert outcome(unguarded, *args) is MemoryAccessFault
    kernels.reset()
    q_out, k_out = guarded(*args)
    assert kernels.calls == [] and q_out.shape == q.shape and k_out.shape == (16384, 32)
    small = [t[:4] if isinstance(t, torch.Tensor) and t.shape[0] == 16384 else t for t in args]
    assert outcome(unguarded, *small) is AssertionError  # the fused kernel's own AITER_CHECK (rank 2)
    kernels.reset()
    assert isinstance(guarded(*small), tuple) and kernels.calls == []


@pytest.mark.parametrize("where", ["inp1_weight", "inp2", "inp2_weight", "res1"])
def test_triton_quant_a_host_tensor_anywhere_is_a_clear_error(where: str, kernels: AiterKernelDouble) -> None:
    double = FusedDouble(kernels)

    def fused_rms_fp8_group_quant(
        inp1: Any,
        inp1_weight: Any,
        inp1_epsilon: float,
        inp2: Any = None,
        inp2_weight: Any = None,
        inp2_epsilon: Any = None,
        group_size: int = 128,
        dtype_quant: Any = None,
        res1: Any = None,
        output_unquantized_inp1: bool = False,
        transpose_scale: bool = False,
    ) -> Any:
        return double.fused_rms_fp8_group_quant(
            inp1, inp1_weight, inp1_epsilon, inp2, inp2_weight, inp2_epsilon, group_size, res1=res1
        )

    target = next(t for t in TRITON_QUANT if t.attribute == "fused_rms_fp8_group_quant")
    guarded = Guard(fused_rms_fp8_group_quant, target).build()
    g = torch.Generator().manual_seed(2)
    kw = {
        "inp1": torch.randn(4, 64, generator=g).to(BF),
        "inp1_weight": torch.ones(64, dtype=BF),
        "inp2": torch.randn(4, 32, generator=g).to(BF),
        "inp2_weight": torch.ones(32, dtype=BF),
        "res1": torch.randn(4, 64, generator=g).to(BF),
    }
    kw[where] = on_host(kw[where].clone())
    args = (kw["inp1"], kw["inp1_weight"], 1e-6, kw["inp2"], kw["inp2_weight"], 1e-6, 128, None, kw["res1"])
    assert outcome(fused_rms_fp8_group_quant, *args) is MemoryAccessFault
    kernels.reset()
    with pytest.raises(ValueError, match="host tensor"):
        guarded(*args)
    assert kernels.calls == []


def test_a_declared_group_the_signature_lacks_is_refused_at_patch_time() -> None:
    """A quant whose signature has no ``inp2_weight`` (a release that renamed it) is not guarded as a one-group
    entry: the patcher says it could not patch it, and sglang stays as it was."""

    def fused_rms_fp8_group_quant(inp1: Any, inp1_weight: Any, inp1_epsilon: float, inp2: Any = None) -> Any:
        return inp1

    target = next(t for t in TRITON_QUANT if t.attribute == "fused_rms_fp8_group_quant")
    with pytest.raises(LookupError, match="lacks a parameter"):
        Guard(fused_rms_fp8_group_quant, target)
