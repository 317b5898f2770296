"""Pure layout logic: same object, view, or exactly one copy; refusals; what the release does itself."""

from __future__ import annotations

import torch

from aiter_norm_guard.emulation import EmulatedRocm, on_host
from aiter_norm_guard.guard import layout
from aiter_norm_guard.guard.layout import Plan, as_rows, is_row_strided
from aiter_norm_guard.kernels import needs as nd
from aiter_norm_guard.kernels import norm, quant
from aiter_norm_guard.kernels.needs import Needs, checks, needs

BF = torch.bfloat16
HIP = needs(*norm.RMSNORM2D)._replace(device=False)  # these tests run on host memory without the emulation
PAD = needs(norm.TRITON_ADD_RMSNORM_PAD)._replace(device=False)
Tensor = torch.Tensor


# One group (x and its weights), as an RMSNorm calls: the per-call checks from the needs less ``done``.
def refusal(
    x: Tensor, rows: list[Tensor], summed: list[Tensor], weights: list[Tensor], n: Needs, done=()
) -> str | None:
    return layout.refusal([(x, weights)], rows, summed, checks(n, done, bool(rows)))


def plan(
    x: Tensor, rows: list[Tensor], summed: list[Tensor], n: Needs, done=(), keep_rank: bool = False
) -> Plan | None:
    return layout.plan([x], rows, summed, checks(n, done, bool(rows)), keep_rank)


def exit_of(x: Tensor, weights: list[Tensor], done) -> bool:  # type: ignore[no-untyped-def]
    return layout.exit_of(x, weights, checks(HIP, done, False))


def test_2d_contiguous_is_the_same_object() -> None:
    t = torch.randn(4, 8)
    assert as_rows(t) is t


def test_contiguous_nd_is_a_view_not_a_copy() -> None:
    t = torch.randn(2, 3, 8)
    rows = as_rows(t)
    assert rows.shape == (6, 8) and rows.data_ptr() == t.data_ptr() and rows._base is t


def test_strided_3d_slice_is_one_contiguous_copy() -> None:
    qkv = torch.randn(16, 6144)
    q = qkv[:, :4096].view(16, 32, 128)
    rows = as_rows(q)
    assert rows.shape == (512, 128) and rows.is_contiguous()
    assert rows.untyped_storage().data_ptr() != qkv.untyped_storage().data_ptr()
    assert torch.equal(rows.view(16, 32, 128), q)


def test_transposed_2d_is_copied_and_row_strided_kept_only_when_allowed() -> None:
    t = torch.randn(8, 4).t()
    assert not is_row_strided(t) and as_rows(t, allow_row_stride=True).is_contiguous()
    wide = torch.randn(4, 16)[:, :8]
    assert is_row_strided(wide)
    assert as_rows(wide, allow_row_stride=True) is wide
    assert as_rows(wide).is_contiguous() and as_rows(wide) is not wide


def test_expanded_stride_zero_is_copied() -> None:
    t = torch.randn(1, 8).expand(5, 8)
    rows = as_rows(t)
    assert rows.is_contiguous() and rows.untyped_storage().nbytes() == 5 * 8 * 4


def test_refusals_name_what_no_layout_can_fix() -> None:
    x = torch.randn(4, 8, dtype=BF)
    w = torch.ones(8, dtype=BF)
    assert refusal(x, [], [], [w], HIP) is None
    assert refusal(x[:0], [], [], [w], HIP) == layout.ZERO
    assert refusal(torch.randn(2, 0, 8, dtype=BF), [], [], [w], HIP) == layout.ZERO  # shape[0] != 0, still empty
    assert refusal(torch.tensor(1.0, dtype=BF), [], [], [w], HIP) == layout.RANK_ZERO
    assert refusal(x, [], [], [w.float()], HIP) == layout.DTYPE  # read as bf16 bytes: garbage
    assert refusal(x, [], [], [torch.ones(16, dtype=BF)], HIP) == layout.HIDDEN_SIZE  # n elements of a longer one
    assert refusal(x, [], [], [torch.ones(4, dtype=BF)], HIP) == layout.HIDDEN_SIZE  # past a shorter one
    assert refusal(x, [], [], [torch.ones(16, dtype=BF)[::2]], HIP) == layout.STRIDED_WEIGHT
    assert refusal(x, [x.float()], [], [w], HIP) == layout.ROWS_MISMATCH  # residual read in x's dtype
    assert refusal(x, [x[:2]], [], [w], HIP) == layout.ROWS_MISMATCH  # fewer rows
    assert refusal(x, [x.view(1, 4, 8)], [], [w], HIP) == layout.ROWS_MISMATCH  # same numel, native broadcasts
    assert refusal(x, [x.clone(), x.t().contiguous().t()], [], [w, w], HIP) is None


def test_what_the_release_does_itself_is_not_refused_again() -> None:
    x = torch.randn(4, 8, dtype=BF)
    w = torch.ones(8, dtype=BF)
    assert refusal(x, [], [], [w.float()], HIP, {nd.WEIGHT_DTYPE}) is None
    assert refusal(x, [], [], [torch.ones(16, dtype=BF)[::2]], HIP, {nd.WEIGHT_STRIDE}) is None
    assert refusal(x, [], [], [w.float()[:4]], HIP, {nd.WEIGHT_DTYPE}) == layout.HIDDEN_SIZE  # length: never upstream
    assert exit_of(x[:0], [w], {nd.ZERO_ROWS}) and not exit_of(x[:0], [w], ())
    assert not exit_of(torch.randn(2, 0, 8, dtype=BF), [w], {nd.ZERO_ROWS})  # only shape[0] == 0 returns early
    assert exit_of(x, [w.float()], {nd.WEIGHT_DTYPE}) and not exit_of(x, [w], {nd.WEIGHT_DTYPE})


def test_host_tensors_are_refused_unless_the_release_sends_them_native(rocm: EmulatedRocm) -> None:
    device = needs(*norm.RMSNORM2D)
    x, w = torch.randn(4, 8, dtype=BF), torch.ones(8, dtype=BF)
    assert refusal(x, [], [], [w], device) is None
    assert refusal(on_host(torch.randn(4, 8, dtype=BF)), [], [], [w], device) == layout.HOST_TENSOR
    assert refusal(x, [], [], [on_host(torch.ones(8, dtype=BF))], device) == layout.HOST_TENSOR
    host_x = on_host(torch.randn(4, 8, dtype=BF))
    assert exit_of(host_x, [w], {nd.HOST}) and refusal(host_x, [], [], [w], device, {nd.HOST}) is None


def test_a_summed_tensor_counts_only_through_the_sum() -> None:
    """``post`` is added to the residual in Python: any layout of it is fine; its shape and
    dtype matter only where they change the sum's."""
    x, res, w = torch.randn(4, 8, dtype=BF), torch.randn(4, 8, dtype=BF), torch.ones(8, dtype=BF)
    column_slice = torch.randn(4, 16, dtype=BF)[:, :8]
    assert refusal(x, [res], [column_slice], [w], HIP) is None
    assert refusal(x, [res], [torch.randn(1, 8, dtype=BF)], [w], HIP) is None  # broadcasts to x's shape
    assert refusal(x, [res], [column_slice.float()], [w], HIP) == layout.ROWS_MISMATCH  # an fp32 sum
    assert refusal(x, [res], [torch.randn(4, 1, 8, dtype=BF)], [w], HIP) == layout.ROWS_EXPAND
    assert plan(x, [res], [column_slice], HIP) is None  # nothing to copy: the sum is contiguous
    assert (res + column_slice).is_contiguous() and (res + torch.randn(8, 4, dtype=BF).t()).is_contiguous()


def test_plan_follows_what_the_release_does() -> None:
    x3 = torch.randn(2, 3, 8)
    res3 = torch.randn(2, 3, 8)
    assert plan(x3, [], [], HIP, {nd.X_LAYOUT}) is None  # 0.5.11+ flattens x itself
    assert plan(x3, [res3], [], HIP, {nd.X_CONTIGUOUS_2D}) is not None  # ... but not with a residual before 0.5.19
    assert plan(x3, [res3], [], HIP, {nd.X_LAYOUT, nd.ROWS_LAYOUT}) is None
    xt = torch.randn(8, 4).t()
    assert plan(xt, [torch.randn(4, 8)], [], HIP, {nd.X_CONTIGUOUS_2D}) is None  # the release copies a 2-D x itself
    p = plan(xt, [torch.randn(8, 4).t()], [], HIP, {nd.X_CONTIGUOUS_2D})  # ... but not the residual
    assert p is not None and p.tensors[0] is xt and p.tensors[1].is_contiguous()
    assert plan(torch.randn(4, 16)[:, :8], [], [], HIP, {nd.X_RESHAPED}) is None  # unit last stride: CK reads it
    assert plan(xt, [], [], HIP, {nd.X_RESHAPED}) is not None
    assert plan(xt, [], [], PAD) is None  # Triton honours both strides


def test_plan_restores_the_callers_shape_and_counts_its_copies() -> None:
    x = torch.randn(2, 3, 8)
    res = torch.randn(2, 3, 8)
    p = plan(x, [res], [], HIP)
    assert p is not None and [t.shape for t in p.tensors] == [(6, 8), (6, 8)]
    assert p.copies == 0 and p.kind == layout.VIEW
    out, res_out = p.restore((torch.zeros(6, 8), torch.ones(6, 8)))  # type: ignore[misc]
    assert out.shape == x.shape and res_out.shape == res.shape
    padded = torch.zeros(6, 16)  # a result of another shape (a padded last dim) is left alone
    assert p.restore(padded) is padded
    assert plan(torch.randn(6, 8), [], [], HIP) is None  # nothing to do for an already-right caller
    q = plan(torch.randn(8, 4).t(), [], [], HIP)
    assert q is not None and q.copies == 1 and q.kind == layout.LAYOUT_COPY


def test_keep_rank_only_makes_contiguous() -> None:
    t = torch.randn(8, 4).t()
    p = plan(t, [], [], needs(quant.HIP_RMSNORM_QUANT), keep_rank=True)
    assert p is not None and p.tensors[0].shape == t.shape and p.tensors[0].is_contiguous()
    assert p.restore("anything") == "anything"
    assert plan(torch.randn(4, 8), [], [], HIP, keep_rank=True) is None


def test_one_dimensional_activation_is_one_row() -> None:
    x = torch.randn(8)
    p = plan(x, [], [], HIP)
    assert p is not None and p.tensors[0].shape == (1, 8)
    assert p.restore(torch.zeros(1, 8)).shape == (8,)  # type: ignore[union-attr]
