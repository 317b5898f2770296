"""Inputs a hostile caller can hand the norm entries, through sglang's own dispatch on every pinned release.

Each found by an adversarial review: a post-residual addition that broadcasts, a weight that
``nn.Module`` does not keep in its dicts (parametrized, a property), a wrapper over the entry
that hides the residual in ``*args``, and residuals the release itself flattens to rows.  In
each, the kernel either gets what its contract reads or is never reached.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest
import torch
from torch.nn.utils import parametrize

import aiter_norm_guard
from aiter_norm_guard.cli.cases import GEMMA, RMS, make_module
from aiter_norm_guard.emulation import AiterKernelDouble, InvalidConfiguration, MemoryAccessFault
from aiter_norm_guard.guard.guard import original_of
from aiter_norm_guard.kernels.needs import ROWS_LAYOUT
from conftest import entry_fn, original_entry, outcome, require_entry, upstream_checks

BF = torch.bfloat16
FAULTS = (MemoryAccessFault, InvalidConfiguration)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a is b


@pytest.mark.parametrize("post_shape", [(64,), (1, 1, 64), (4, 64), ()])
@pytest.mark.parametrize("entry", [RMS, GEMMA])
def test_a_post_that_broadcasts_is_summed_as_the_release_sums_it(
    entry: str, post_shape: tuple[int, ...], layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """Rank-3 x and residual, and a post that broadcasts: the guard adds it to the residual as the release
    does (``residual + post``), then hands the release rows: its result on those rows, bit for bit."""
    require_entry(entry)
    original = original_entry(layernorm, entry)
    if "post_residual_addition" not in inspect.signature(original).parameters:
        pytest.skip(f"n/a: this release's {entry} takes no post_residual_addition")
    norm = make_module(layernorm, entry, 64, BF)
    g = torch.Generator().manual_seed(0)
    x, res = torch.randn(3, 4, 64, generator=g).to(BF), torch.randn(3, 4, 64, generator=g).to(BF)
    post = torch.randn(post_shape, generator=g).to(BF)
    got = outcome(entry_fn(layernorm, entry), norm, x, res, post)
    if ROWS_LAYOUT in upstream_checks(layernorm, entry, with_rows=True):  # the release flattens them itself
        assert same(got, outcome(original, norm, x, res, post))
        return
    assert outcome(original, norm, x, res, post) in FAULTS  # unguarded: the rank-3 x read with n = size(1)
    kernels.reset()
    out, res_out = original(norm, x.reshape(-1, 64), (res + post).reshape(-1, 64))
    assert isinstance(got, tuple) and same(got, (out.view(x.shape), res_out.view(x.shape)))


class _Identity(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w


class _Float(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.float()


class _Short(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w[:32].clone()


@pytest.mark.parametrize("how", ["parametrized", "property"])
def test_a_weight_outside_the_module_dicts_is_checked_where_the_release_reads_it(
    how: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    require_entry(RMS)
    if how == "parametrized":
        norm = make_module(layernorm, RMS, 64, BF)
        parametrize.register_parametrization(norm, "weight", _Identity())
    else:  # a tied norm: the weight is another module's, through a property
        src = make_module(layernorm, RMS, 64, BF)

        class Tied(layernorm.RMSNorm):  # type: ignore[misc, name-defined]
            def __init__(self, src: Any) -> None:
                super().__init__(64, eps=1e-6)  # (the property fails until src is set: a parameter is made)
                del self.weight
                self.src = src

            @property
            def weight(self) -> torch.Tensor:
                return self.src.weight

        norm = Tied(src).to(BF)
    assert "weight" not in norm._parameters
    g = torch.Generator().manual_seed(1)
    for x in (
        torch.randn(3, 4, 64, generator=g).to(BF),
        torch.randn(64, 5, generator=g).to(BF).t(),
        torch.randn(0, 64).to(BF),
    ):
        got = outcome(norm.forward_aiter, x)
        assert isinstance(got, torch.Tensor), got
        torch.testing.assert_close(got, norm.forward_native(x))
    if how == "parametrized":  # a weight of another dtype or length, as the release reads it
        wide = make_module(layernorm, RMS, 64, BF)
        parametrize.register_parametrization(wide, "weight", _Float(), unsafe=True)
        x = torch.randn(5, 64, generator=g).to(BF)
        torch.testing.assert_close(wide.forward_aiter(x), wide.forward_native(x))
        short = make_module(layernorm, RMS, 64, BF)
        parametrize.register_parametrization(short, "weight", _Short(), unsafe=True)
        assert outcome(original_entry(layernorm, RMS), short, x) is MemoryAccessFault  # unguarded: read past it
        kernels.reset()
        assert outcome(short.forward_aiter, x) is outcome(short.forward_native, x) is RuntimeError
        assert kernels.calls == []


def test_a_wrapper_taking_args_does_not_hide_the_residual(
    layernorm: Any, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """A third party's ``(self, x, *args, **kwargs)`` wrapper installed before the guard: the guard takes
    the signature ``__wrapped__`` names, so a residual passed through ``*args`` or by keyword is checked."""
    ours = rmsnorm.__dict__["forward_aiter"]
    release = original_of(ours)
    aiter_norm_guard.uninstall()

    @functools.wraps(release)
    def theirs(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return release(self, x, *args, **kwargs)

    rmsnorm.forward_aiter = theirs
    try:
        st = aiter_norm_guard.install(force=True)
        entry = next(t for t in st["targets"] if t["name"] == RMS)
        assert entry["patched"] and not any("unseen" in c for c in entry["checks"])
        norm = make_module(layernorm, RMS, 64, BF)
        g = torch.Generator().manual_seed(2)
        x = torch.randn(4, 64, generator=g).to(BF)
        short = torch.randn(1, 64, generator=g).to(BF)
        assert outcome(release, norm, x, short) is MemoryAccessFault  # unguarded: 4 rows read from 1
        for res in (short, torch.randn(64, 4, generator=g).to(BF).t(), torch.randn(4, 64, generator=g)):
            for kw in (False, True):
                kernels.reset()
                got = outcome(norm.forward_aiter, x, residual=res) if kw else outcome(norm.forward_aiter, x, res)
                assert got not in FAULTS and (res is not short or kernels.calls == [])  # short: native's broadcast
                for a, b in zip(got, norm.forward_native(x, res), strict=True):
                    torch.testing.assert_close(a, b)
    finally:
        aiter_norm_guard.uninstall()
        rmsnorm.forward_aiter = release
        aiter_norm_guard.install(force=True)


def test_a_residual_the_release_flattens_itself_is_judged_as_its_rows(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """0.5.19+ reshapes x, the residual and post to (-1, n) itself: a residual of x's rows in another
    shape is the release's to take (bit for bit), not a broadcast the guard refuses."""
    require_entry(RMS)
    if ROWS_LAYOUT not in upstream_checks(layernorm, RMS, with_rows=True):
        pytest.skip("n/a: this release does not flatten the residual itself")
    norm = make_module(layernorm, RMS, 64, BF)
    g = torch.Generator().manual_seed(3)
    original = original_entry(layernorm, RMS)
    for xs, rs in (((5, 1, 64), (5, 64)), ((2, 3, 64), (6, 64))):
        x, res = torch.randn(xs, generator=g).to(BF), torch.randn(rs, generator=g).to(BF)
        want = original(norm, x, res)
        kernels.reset()
        assert same(norm.forward_aiter(x, res), want) and len(kernels.calls) == 1
    x, res = torch.randn(6, 64, generator=g).to(BF), torch.randn(2, 3, 64, generator=g).to(BF)
    assert outcome(original, norm, x, res) is MemoryAccessFault  # a 2-D x: the release keeps the residual's pitch
    kernels.reset()
    assert outcome(norm.forward_aiter, x, res) is outcome(norm.forward_native, x, res)
    assert kernels.calls == []
