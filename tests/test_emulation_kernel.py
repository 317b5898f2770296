"""The kernel double reads memory the way aiter's kernels do, and is never kinder than they are."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aiter_norm_guard.cli.cases import qkv_views
from aiter_norm_guard.emulation import AiterKernelDouble, InvalidConfiguration, KernelCrash, MemoryAccessFault

BF = torch.bfloat16


def reference(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


@pytest.fixture(autouse=True)
def device_memory(rocm: Any) -> None:
    """Under the emulation CPU memory plays device memory (the double faults on host pointers)."""


@pytest.fixture(params=["legacy", "opus"])
def k(request: pytest.FixtureRequest) -> AiterKernelDouble:
    return AiterKernelDouble(build=request.param)


def test_2d_contiguous_is_right(k: AiterKernelDouble) -> None:
    x, w = torch.randn(5, 64, dtype=BF), torch.randn(64, dtype=BF)
    torch.testing.assert_close(k.rmsnorm2d_fwd(x, w, 1e-6), reference(x, w))


def test_q_view_runs_off_the_storage_on_the_legacy_build() -> None:
    q, _ = qkv_views(2048, BF, torch.device("cpu"), torch.Generator().manual_seed(0))
    with pytest.raises(MemoryAccessFault, match="row 262143"):  # n = size(1) = 32, pitch 6144
        AiterKernelDouble().rmsnorm2d_fwd(q, torch.ones(128, dtype=BF), 1e-6)


def test_opus_build_sends_rank_3_to_opus_which_copies_it() -> None:
    q, _ = qkv_views(64, BF, torch.device("cpu"), torch.Generator().manual_seed(0))
    w = torch.ones(128, dtype=BF)
    torch.testing.assert_close(AiterKernelDouble(build="opus").rmsnorm2d_fwd(q, w, 1e-6), reference(q, w))


def test_contiguous_3d_reads_wrong_rows_on_the_legacy_build() -> None:
    x = torch.randn(2, 4, 8, dtype=BF)  # n = size(1) = 4, m = 16 rows of pitch 32
    with pytest.raises(MemoryAccessFault):
        AiterKernelDouble().rmsnorm2d_fwd(x, torch.ones(8, dtype=BF), 1e-6)


def test_transposed_2d_reads_wrong_memory_without_faulting(k: AiterKernelDouble) -> None:
    x = torch.randn(16, 8, dtype=BF)[:8, :].t()  # (8, 8), stride (1, 8): unit last stride assumed
    out = k.rmsnorm2d_fwd(x, torch.ones(8, dtype=BF), 1e-6)
    assert not torch.allclose(out.float(), reference(x, torch.ones(8, dtype=BF)).float(), atol=1e-2)


def test_hip_path_reads_the_weight_in_the_activations_dtype_whatever_its_dtype(k: AiterKernelDouble) -> None:
    x = torch.randn(4, 64, dtype=BF)
    w = torch.ones(64, dtype=torch.float32)  # 2-D bf16 <= 8192: the HIP path in both builds
    out = k.rmsnorm2d_fwd(x, w, 1e-6)
    assert not torch.allclose(out.float(), reference(x, w).float(), atol=1e-2)


def test_hip_path_has_no_weight_length_check(k: AiterKernelDouble) -> None:
    x = torch.randn(2, 64, dtype=BF)
    long_w = torch.randn(128, dtype=BF)  # reads the first 64 elements: wrong but no error
    torch.testing.assert_close(k.rmsnorm2d_fwd(x, long_w, 1e-6), reference(x, long_w[:64]))
    with pytest.raises(MemoryAccessFault, match="weight"):  # reads 64 elements past a weight of 32
        k.rmsnorm2d_fwd(x, torch.randn(32, dtype=BF), 1e-6)


def test_opus_asserts_on_the_weight_where_aiter_018_does() -> None:
    x = torch.randn(2, 3, 64, dtype=BF)  # rank 3: opus on >= v0.1.18
    with pytest.raises(AssertionError, match="weight length"):
        AiterKernelDouble(build="opus").rmsnorm2d_fwd(x, torch.randn(32, dtype=BF), 1e-6)
    with pytest.raises(AssertionError, match="weight dtype"):
        AiterKernelDouble(build="opus").rmsnorm2d_fwd(x, torch.randn(64), 1e-6)


def test_zero_rows_is_an_empty_grid_and_zero_hidden_a_crash(k: AiterKernelDouble) -> None:
    with pytest.raises(InvalidConfiguration):
        k.rmsnorm2d_fwd(torch.empty(0, 64, dtype=BF), torch.ones(64, dtype=BF), 1e-6)
    with pytest.raises(KernelCrash):
        AiterKernelDouble().rmsnorm2d_fwd(torch.empty(4, 0, dtype=BF), torch.ones(0, dtype=BF), 1e-6)


def test_fp32_activation_is_refused_by_the_hip_kernel_on_the_legacy_build() -> None:
    with pytest.raises(RuntimeError, match="not support output type"):
        AiterKernelDouble().rmsnorm2d_fwd(torch.randn(2, 64), torch.ones(64), 1e-6)
    x = torch.randn(2, 64)
    torch.testing.assert_close(
        AiterKernelDouble(build="opus").rmsnorm2d_fwd(x, torch.ones(64), 1e-6), reference(x, torch.ones(64))
    )


def test_with_add_writes_outputs_through_their_row_pitch(k: AiterKernelDouble) -> None:
    x, r, w = torch.randn(3, 16, dtype=BF), torch.randn(3, 16, dtype=BF), torch.randn(16, dtype=BF)
    out, rout = torch.empty_like(x), torch.empty_like(x)
    k.rmsnorm2d_fwd_with_add(out, x, r, rout, w, 1e-6)
    torch.testing.assert_close(rout, (x.float() + r.float()).to(BF))
    torch.testing.assert_close(out, reference(rout, w), atol=2e-2, rtol=2e-2)
    assert [c.name for c in k.calls] == ["rmsnorm2d_fwd_with_add"] and k.calls[0].tensors["input"] is x


def test_with_add_indexes_the_residual_with_the_inputs_rows() -> None:
    x = torch.randn(16, 128, dtype=BF)
    residual = torch.randn(1, 16, 128, dtype=BF)  # n = size(1) = 16 for the residual's own layout too
    out, rout = torch.empty_like(x), torch.empty_like(x)
    with pytest.raises(MemoryAccessFault, match="residual_in"):  # pitch 2048 from the residual's stride(0)
        AiterKernelDouble().rmsnorm2d_fwd_with_add(out, x, residual, rout, torch.ones(128, dtype=BF), 1e-6)


def test_layernorm_is_ck_with_size_minus_one_and_reads_weight_and_bias_in_the_activations_dtype() -> None:
    k = AiterKernelDouble()
    x = torch.randn(4, 32, dtype=BF)
    w, b = torch.randn(32, dtype=BF), torch.randn(32, dtype=BF)
    want = torch.nn.functional.layer_norm(x.float(), (32,), w.float(), b.float(), 1e-6).to(BF)
    torch.testing.assert_close(k.layernorm2d_fwd(x, w, b, 1e-6), want, atol=2e-2, rtol=2e-2)
    three = torch.randn(2, 3, 32, dtype=BF)  # CK: n = size(-1) = 32, m = 6, pitch stride(0) = 96
    with pytest.raises(MemoryAccessFault):
        k.layernorm2d_fwd(three, w, b, 1e-6)
    with pytest.raises(InvalidConfiguration):
        k.layernorm2d_fwd(x[:0], w, b, 1e-6)
    bad = k.layernorm2d_fwd(x, w.float(), b.float(), 1e-6)
    assert not torch.allclose(bad.float(), want.float(), atol=1e-1)


def test_rmsnorm_quant_writes_fp8_rows_and_a_scale_per_row() -> None:
    k = AiterKernelDouble()
    x, w = torch.randn(4, 64, dtype=BF), torch.randn(64, dtype=BF)
    out, scale = torch.empty(4, 64, dtype=torch.float8_e4m3fnuz), torch.empty(4)
    k.rmsnorm_quant(out, x, scale, w, 1e-6)
    torch.testing.assert_close(out.float() * scale.unsqueeze(1), reference(x, w).float(), atol=0.1, rtol=0.1)
    with pytest.raises(InvalidConfiguration):
        k.rmsnorm_quant(out[:0], x[:0], scale[:0], w, 1e-6)


def test_pad_kernel_reads_both_strides_and_the_weight_in_its_own_dtype() -> None:
    k = AiterKernelDouble()
    x = torch.randn(8, 6, dtype=BF).t()  # (6, 8) transposed: Triton honours both strides
    w = torch.randn(8)  # fp32 weight: read as fp32
    out = k.fused_add_rmsnorm_pad(x, w, 1e-6, None, 16)
    assert isinstance(out, torch.Tensor) and out.shape == (6, 16)
    torch.testing.assert_close(out[:, :8], reference(x, w), atol=2e-2, rtol=2e-2)
    assert torch.count_nonzero(out[:, 8:]) == 0
    empty = k.fused_add_rmsnorm_pad(x[:0], w, 1e-6, None, 16)  # Triton skips an empty grid
    assert isinstance(empty, torch.Tensor) and empty.shape == (0, 16)
    with pytest.raises(ValueError):
        k.fused_add_rmsnorm_pad(torch.randn(2, 3, 8, dtype=BF), w, 1e-6, None, 16)  # M, N = x.shape
    with pytest.raises(MemoryAccessFault, match="weight"):
        k.fused_add_rmsnorm_pad(x, torch.randn(4), 1e-6, None, 16)


def test_the_double_launches_only_the_contracts_the_guard_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """One statement of each kernel: every launch of the double is indexed by a contract object the
    target table (and so the guard) declares, the very same object."""
    from aiter_norm_guard.emulation import launch
    from aiter_norm_guard.targets import TARGETS

    declared = {id(k) for t in TARGETS for k in (*t.kernels, *(k for r in t.routes for k in r.kernels))}
    seen: list[object] = []
    real = launch.Launch.__init__

    def spy(self: launch.Launch, kernel: object, *args: object, **kwargs: object) -> None:
        seen.append(kernel)
        real(self, kernel, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(launch.Launch, "__init__", spy)
    x, w = torch.randn(4, 64, dtype=BF), torch.randn(64, dtype=BF)
    for build in ("legacy", "opus"):
        k = AiterKernelDouble(build=build)
        k.rmsnorm2d_fwd(x, w, 1e-6)
        if build == "opus":
            k.rmsnorm2d_fwd(torch.randn(2, 4, 64, dtype=BF), w, 1e-6)
        k.rmsnorm2d_fwd_with_add(torch.empty_like(x), x, x.clone(), torch.empty_like(x), w, 1e-6)
    k.layernorm2d_fwd(x, w, w.clone(), 1e-6)
    k.rmsnorm_quant(torch.empty(4, 64, dtype=torch.float8_e4m3fnuz), x, torch.empty(4), w, 1e-6)
    k.fused_add_rmsnorm_pad(x, w, 1e-6, x.clone(), 128)
    assert len(seen) >= 7 and all(id(kernel) in declared for kernel in seen)


def test_a_row_strided_input_is_read_through_its_own_pitch_and_an_expanded_one_breaks_triton(
    k: AiterKernelDouble,
) -> None:
    wide = torch.randn(4, 96, dtype=BF)[:, :64]  # HIP and CK read each tensor's own stride(0)
    w = torch.randn(64, dtype=BF)
    torch.testing.assert_close(k.rmsnorm2d_fwd(wide, w, 1e-6), reference(wide, w))
    with pytest.raises(MemoryAccessFault, match=r"tl\.assume"):  # x_stride_m == 0: undefined behaviour
        k.fused_add_rmsnorm_pad(torch.randn(1, 64, dtype=BF).expand(4, 64), w, 1e-6, None, 128)
