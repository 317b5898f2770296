"""The kernel double reads memory the way aiter's HIP kernel does."""

from __future__ import annotations

import pytest
import torch

from aiter_norm_guard.cases import qkv_views
from aiter_norm_guard_emulation import AiterKernelDouble, InvalidConfiguration, MemoryAccessFault


def reference(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


def test_2d_contiguous_is_right() -> None:
    k = AiterKernelDouble()
    x, w = torch.randn(5, 64), torch.randn(64)
    torch.testing.assert_close(k.rmsnorm2d_fwd(x, w, 1e-6), reference(x, w))


def test_q_view_runs_off_the_storage() -> None:
    q, _ = qkv_views(2048, torch.bfloat16, torch.device("cpu"), torch.Generator().manual_seed(0))
    with pytest.raises(MemoryAccessFault, match="row 262143"):
        AiterKernelDouble().rmsnorm2d_fwd(q, torch.ones(128, dtype=torch.bfloat16), 1e-6)


def test_contiguous_3d_reads_wrong_rows() -> None:
    x = torch.randn(2, 4, 8)  # n = size(1) = 4, m = 16 rows of pitch 32
    with pytest.raises(MemoryAccessFault):
        AiterKernelDouble().rmsnorm2d_fwd(x, torch.ones(8), 1e-6)


def test_transposed_2d_reads_wrong_memory_without_faulting() -> None:
    base = torch.randn(16, 8)
    x = base[:8, :].t()  # (8, 8), stride (1, 8): the kernel assumes unit last stride
    out = AiterKernelDouble().rmsnorm2d_fwd(x, torch.ones(8), 1e-6)
    assert not torch.allclose(out, reference(x, torch.ones(8)))


def test_fp32_weight_is_read_as_bf16_garbage() -> None:
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    w = torch.ones(64, dtype=torch.float32)
    out = AiterKernelDouble().rmsnorm2d_fwd(x, w, 1e-6)
    assert not torch.allclose(out.float(), reference(x, w).float(), atol=1e-2)


def test_zero_rows_is_an_empty_grid() -> None:
    with pytest.raises(InvalidConfiguration):
        AiterKernelDouble().rmsnorm2d_fwd(torch.empty(0, 64), torch.ones(64), 1e-6)


def test_with_add_writes_outputs_through_their_row_pitch() -> None:
    k = AiterKernelDouble()
    x, r, w = torch.randn(3, 16), torch.randn(3, 16), torch.randn(16)
    out, rout = torch.empty_like(x), torch.empty_like(x)
    k.rmsnorm2d_fwd_with_add(out, x, r, rout, w, 1e-6)
    torch.testing.assert_close(rout, x + r)
    torch.testing.assert_close(out, reference(x + r, w))
    assert [c.name for c in k.calls] == ["rmsnorm2d_fwd_with_add"] and k.calls[0].tensors["input"] is x


def test_weight_length_is_checked_like_aiters_wrapper() -> None:
    with pytest.raises(RuntimeError, match="weight length"):
        AiterKernelDouble().rmsnorm2d_fwd(torch.randn(2, 64), torch.ones(128), 1e-6)
