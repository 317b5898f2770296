"""The guard meets each kernel's contract exactly: no fault left reachable, no copy or slow path the
release does not take.  Through sglang's own dispatch on every pinned release that has the path;
the double reads the same contracts the guard does.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aiter_norm_guard.cli.cases import LAYER, RMS, make_module
from aiter_norm_guard.emulation import AiterKernelDouble, InvalidConfiguration, KernelCrash, MemoryAccessFault
from aiter_norm_guard.emulation.counting import CopyCounter
from aiter_norm_guard.guard.fallbacks import pad_like_release
from conftest import entry_fn, original_entry, outcome, require_entry, sglang_version

BF = torch.bfloat16


def test_layernorm_reads_hidden_size_weight_elements_whatever_x_says(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """The release reshapes x to (-1, self.hidden_size), so the kernel reads hidden_size weight and bias
    elements: a weight of 64 with hidden_size 128 is read past, whatever x's last dimension."""
    require_entry(LAYER)
    norm = make_module(layernorm, LAYER, 128, BF)
    norm.weight.data, norm.bias.data = torch.randn(64, dtype=BF), torch.randn(64, dtype=BF)
    for x in (torch.randn(4, 64, dtype=BF), torch.randn(4, 128, dtype=BF)):
        native = outcome(norm.forward_native, x)
        assert native is RuntimeError  # F.layer_norm: weight of 64 for a normalized shape of 128
        kernels.reset()
        assert outcome(original_entry(layernorm, LAYER), norm, x) is MemoryAccessFault  # unguarded: read past
        kernels.reset()
        assert outcome(norm, x) is native
        assert kernels.calls == []


def test_layernorm_x_of_another_hidden_size_goes_native(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    require_entry(LAYER)
    norm = make_module(layernorm, LAYER, 128, BF)
    x = torch.randn(4, 64, dtype=BF)  # reshape(-1, 128) would make 2 rows of 128: a result native never gives
    kernels.reset()
    assert outcome(norm, x) is outcome(norm.forward_native, x) is RuntimeError
    assert kernels.calls == []


def _pad_module(layernorm: Any) -> Any:
    require_entry(RMS)
    if "x_pad_to_multiple" not in layernorm.RMSNorm.__init__.__code__.co_varnames:
        pytest.skip(f"n/a: sglang {sglang_version()} has no x_pad_to_multiple")
    return layernorm.RMSNorm(96, eps=1e-6, x_pad_to_multiple=64).to(BF)


@pytest.mark.parametrize("kind", ["expanded", "strided"])
@pytest.mark.parametrize("with_residual", [False, True])
def test_pad_path_weight_is_read_with_unit_stride(
    kind: str, with_residual: bool, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """Triton's ``_fused_add_rmsnorm_pad`` loads ``weight_ptr + n_offs``: an expanded weight is read
    past its storage, a strided one wrongly.  Guarded: forward_native, padded as the release pads."""
    norm = _pad_module(layernorm)
    good = torch.randn(96, dtype=BF)
    norm.weight.data = good[:1].clone().expand(96) if kind == "expanded" else torch.stack([good, good], 1).view(-1)[::2]
    x = torch.randn(4, 96, dtype=BF)
    args = (x, torch.randn(4, 96, dtype=BF)) if with_residual else (x,)
    kernels.reset()
    unguarded = outcome(original_entry(layernorm, RMS), norm, *args)
    if kind == "expanded":
        assert unguarded is MemoryAccessFault
    kernels.reset()
    got = norm(*args)
    assert kernels.calls == []
    want = pad_like_release(norm.x_pad_to_multiple, norm.forward_native(*args))
    for g, w in zip(got if with_residual else (got,), want if with_residual else (want,), strict=True):
        assert g.shape == w.shape and torch.equal(g, w)
    assert (got[0] if with_residual else got).shape == (4, 128)


def test_post_is_only_summed_so_a_column_slice_costs_no_copy_and_no_slow_path(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """Qwen3-VL's deepstack post (``input_deepstack_embeds[:, sep:sep + H]``): the release adds it to the
    residual in Python; the guard neither copies it nor leaves its fast path."""
    require_entry(RMS)
    fn = entry_fn(layernorm, RMS)
    if "post_residual_addition" not in fn.__code__.co_varnames:
        pytest.skip(f"n/a: sglang {sglang_version()} has no post_residual_addition")
    norm = make_module(layernorm, RMS, 128, BF)
    x, res = torch.randn(8, 128, dtype=BF), torch.randn(8, 128, dtype=BF)
    post = torch.randn(8, 3 * 128, dtype=BF)[:, 128:256]
    slow_calls: list[Any] = []
    real_slow = fn.__globals__["_slow"]
    fn.__globals__["_slow"] = lambda *a: slow_calls.append(a) or real_slow(*a)
    try:
        kernels.compute = kernels.record = False
        with CopyCounter() as guarded_copies:
            norm(x, res, post)
        with CopyCounter() as release_copies:
            original_entry(layernorm, RMS)(norm, x, res, post)
    finally:
        fn.__globals__["_slow"] = real_slow
        kernels.compute = kernels.record = True
    assert slow_calls == [] and guarded_copies.copies == release_copies.copies
    got, want = norm(x, res, post), original_entry(layernorm, RMS)(norm, x, res.contiguous(), post.contiguous())
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_post_without_a_residual_is_ignored_as_the_release_ignores_it(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    require_entry(RMS)
    if "post_residual_addition" not in entry_fn(layernorm, RMS).__code__.co_varnames:
        pytest.skip(f"n/a: sglang {sglang_version()} has no post_residual_addition")
    norm = make_module(layernorm, RMS, 128, BF)
    x, post = torch.randn(8, 128, dtype=BF), torch.randn(8, 1, 128, dtype=BF)
    want = original_entry(layernorm, RMS)(norm, x, None, post)
    got = norm(x, None, post)
    assert got.shape == (8, 128) and torch.equal(got, want)
    assert torch.equal(norm.forward_native(x, None, post), norm.forward_native(x))  # native ignores it too


def test_zero_rows_past_the_first_dimension_are_caught_where_the_release_checks_only_shape_0(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """0.5.13+ returns early for ``x.shape[0] == 0``; a (4, 0, 128) input still reshapes to zero rows."""
    require_entry(RMS)
    norm = make_module(layernorm, RMS, 128, BF)
    x = torch.randn(4, 0, 128, dtype=BF)
    kernels.reset()
    assert outcome(original_entry(layernorm, RMS), norm, x) in (InvalidConfiguration, KernelCrash)  # HIP: n = 0
    kernels.reset()
    assert norm(x).shape == norm.forward_native(x).shape == (4, 0, 128)
    assert kernels.calls == []


def test_host_tensors_never_reach_the_kernel(layernorm: Any, kernels: AiterKernelDouble, guarded: None) -> None:
    """The kernels dereference device pointers (the emulation plays CPU memory as the device's and
    marks host memory with on_host).  Before 0.5.21 the release hands a host x to aiter: a fault;
    guarded, forward_native.  0.5.21+ sends it to forward_native itself: the guard passes it through."""
    from aiter_norm_guard.emulation import on_host

    require_entry(RMS)
    norm = make_module(layernorm, RMS, 128, BF)
    x = on_host(torch.randn(4, 128, dtype=BF))
    kernels.reset()
    unguarded = outcome(original_entry(layernorm, RMS), norm, x)
    assert unguarded is MemoryAccessFault or torch.equal(unguarded, norm.forward_native(x))
    kernels.reset()
    assert torch.equal(norm(x), norm.forward_native(x))
    assert kernels.calls == []
    weight_on_host = make_module(layernorm, RMS, 128, BF)
    weight_on_host.weight.data = on_host(torch.randn(128, dtype=BF))
    kernels.reset()
    y = torch.randn(4, 128, dtype=BF)
    assert torch.equal(weight_on_host(y), weight_on_host.forward_native(y)) and kernels.calls == []
