"""Pure layout logic: same object, view, or exactly one copy; refusals; the restore plan."""

from __future__ import annotations

import torch

from aiter_norm_guard.contracts import layout
from aiter_norm_guard.contracts.layout import as_rows, is_row_strided, plan, refusal, weight_refusal

BF = torch.bfloat16


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
    assert refusal(x, [], [w]) is None
    assert refusal(x[:0], [], [w]) == layout.ZERO_ROWS
    assert refusal(torch.randn(2, 0, 8, dtype=BF), [], [w]) == layout.ZERO_ROWS  # shape[0] != 0, still empty
    assert refusal(torch.tensor(1.0, dtype=BF), [], [w]) == layout.RANK_ZERO
    assert refusal(x, [], [w.float()]) == layout.WEIGHT_DTYPE  # read as bf16 bytes: garbage
    assert refusal(x, [], [torch.ones(16, dtype=BF)]) == layout.HIDDEN_SIZE  # n elements of a longer weight
    assert refusal(x, [], [torch.ones(4, dtype=BF)]) == layout.HIDDEN_SIZE  # past a shorter one
    assert refusal(x, [], [torch.ones(16, dtype=BF)[::2]]) == layout.STRIDED_WEIGHT
    assert refusal(x, [x.float()], [w]) == layout.ROWS_MISMATCH  # residual read in x's dtype
    assert refusal(x, [x[:2]], [w]) == layout.ROWS_MISMATCH  # fewer rows
    assert refusal(x, [x.view(1, 4, 8)], [w]) == layout.ROWS_MISMATCH  # same numel, native broadcasts
    assert refusal(x, [x.clone(), x.t().contiguous().t()], [w, w]) is None


def test_weight_refusal_order_is_dtype_then_length_then_stride() -> None:
    w = torch.ones(16, dtype=torch.float32)[::2]
    assert weight_refusal(8, BF, [w]) == layout.WEIGHT_DTYPE
    assert weight_refusal(8, torch.float32, [w]) == layout.STRIDED_WEIGHT
    assert weight_refusal(4, torch.float32, [w]) == layout.HIDDEN_SIZE


def test_plan_restores_the_callers_shape_on_every_result_tensor() -> None:
    x = torch.randn(2, 3, 8)
    res = torch.randn(2, 3, 8)
    p = plan(x, [res])
    assert [t.shape for t in p.tensors] == [(6, 8), (6, 8)]
    out, res_out = p.restore((torch.zeros(6, 8), torch.ones(6, 8)))  # type: ignore[misc]
    assert out.shape == x.shape and res_out.shape == res.shape
    padded = torch.zeros(6, 16)  # a result of another shape (a padded last dim) is left alone
    assert p.restore(padded) is padded
    flat = torch.randn(6, 8)
    y = torch.zeros(6, 8)
    assert plan(flat, []).restore(y) is y  # nothing reshaped for an already-2-D caller
    assert plan(flat, []).tensors[0] is flat


def test_keep_rank_only_makes_contiguous() -> None:
    t = torch.randn(8, 4).t()
    p = plan(t, [], keep_rank=True)
    assert p.tensors[0].shape == t.shape and p.tensors[0].is_contiguous()
    assert p.restore("anything") == "anything"
    c = torch.randn(4, 8)
    assert plan(c, [], keep_rank=True).tensors[0] is c


def test_one_dimensional_activation_is_one_row() -> None:
    x = torch.randn(8)
    p = plan(x, [])
    assert p.tensors[0].shape == (1, 8)
    assert p.restore(torch.zeros(1, 8)).shape == (8,)  # type: ignore[union-attr]

