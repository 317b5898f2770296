"""Pure layout logic: same object, view, or exactly one copy; the restore plan."""

from __future__ import annotations

import torch

from aiter_norm_guard.layout import as_rows, is_row_strided, needs_reference, plan_rows


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


def test_needs_reference_cases() -> None:
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    assert not needs_reference(x, torch.bfloat16, None, None)
    assert needs_reference(x, torch.float32, None, None)  # weight read in the wrong dtype
    assert needs_reference(x[:0], torch.bfloat16, None, None)  # empty grid
    assert needs_reference(torch.tensor(1.0, dtype=torch.bfloat16), torch.bfloat16, None, None)
    assert needs_reference(x, torch.bfloat16, x.float(), None)  # residual read in x's dtype
    assert needs_reference(x, torch.bfloat16, x[:2], None)  # residual rows do not match
    assert not needs_reference(x, torch.bfloat16, x.clone(), x.clone())


def test_plan_restores_caller_shapes() -> None:
    x = torch.randn(2, 3, 8)
    res = torch.randn(2, 3, 8)
    plan = plan_rows(x, res, None)
    assert plan.x.shape == (6, 8) and plan.residual is not None and plan.residual.shape == (6, 8)
    out, res_out = plan.restore((torch.zeros(6, 8), torch.ones(6, 8)))  # type: ignore[misc]
    assert out.shape == x.shape and res_out.shape == res.shape
    flat = torch.randn(6, 8)
    plan2 = plan_rows(flat, None, None)
    y = torch.zeros(6, 8)
    assert plan2.restore(y) is y  # nothing reshaped for an already-2-D caller


def test_post_is_canonicalized_only_with_a_residual() -> None:
    x = torch.randn(2, 3, 8)
    post = torch.randn(2, 3, 8)
    assert plan_rows(x, None, post).post is post
    assert plan_rows(x, torch.randn(2, 3, 8), post).post.shape == (6, 8)  # type: ignore[union-attr]
