"""Every guarded entry on the installed sglang release's real modules, case by case.

These are the matrix's behavioural cases, run through sglang's own dispatch
(``module(...)`` -> ``forward`` -> ``_forward_method`` -> the entry).  Each test skips as
"n/a" where the release has no aiter branch for the entry, or handles the case itself.
The kernel double reads memory like aiter's kernels, so an unsafe layout that reached it
would fault or give wrong values.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from aiter_norm_guard.cli.cases import BY_NAME, CASES, GEMMA, LAYER, RMS, CaseInputs, make_module
from aiter_norm_guard.cli.selftest import tolerance
from aiter_norm_guard.emulation import AiterKernelDouble, InvalidConfiguration, MemoryAccessFault
from aiter_norm_guard.emulation.counting import CopyCounter
from aiter_norm_guard.kernels.needs import ROWS_LAYOUT, WEIGHT_DTYPE, WEIGHT_STRIDE, X_LAYOUT, X_RESHAPED, ZERO_ROWS
from conftest import entry_fn, original_entry, require_entry, sglang_version, upstream_checks

TOKENS = 256
DTYPE = torch.bfloat16
#: What a release must do itself to handle each case (names from the upstream table), where one does.
FIXED_BY = {
    "qkv_q_view": X_LAYOUT,
    "qkv_k_view": X_LAYOUT,
    "noncontiguous_2d": X_LAYOUT,
    "contiguous_3d": X_LAYOUT,
    "residual_path": ROWS_LAYOUT,
    "post_residual_path": ROWS_LAYOUT,
    "zero_rows": ZERO_ROWS,
    "zero_rows_residual": ZERO_ROWS,
    "dtype_mismatch": WEIGHT_DTYPE,
    "layernorm_contiguous_3d": X_RESHAPED,
}


def build(case_name: str, layernorm: Any, tokens: int = TOKENS) -> tuple[Any, CaseInputs, Any]:
    case = BY_NAME[case_name]
    require_entry(case.entry)
    if case.uses_post and "post_residual_addition" not in original_entry(layernorm, case.entry).__code__.co_varnames:
        pytest.skip(f"n/a: sglang {sglang_version()} {case.entry} has no post_residual_addition")
    inputs = case.build(tokens, DTYPE, torch.device("cpu"), torch.Generator().manual_seed(0))
    return make_module(layernorm, case.entry, inputs.hidden, DTYPE, inputs.weight_dtype), inputs, case


def assert_same_result(got: Any, want: Any, exact: bool = False, tol: float | None = None) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_result(g, w, exact, tol)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def kernel_safe(name: str, t: torch.Tensor) -> bool:
    return name == "fused_add_rmsnorm_pad" or t.dim() < 2 or (t.dim() == 2 and t.is_contiguous() and t.numel() > 0)


@pytest.mark.parametrize("case_name", [c.name for c in CASES])
def test_guarded_call_matches_forward_native(
    case_name: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    norm, inp, case = build(case_name, layernorm)
    before = [t.clone() for t in inp.args() if t is not None]
    got = norm(*inp.args())  # sglang's own dispatch
    want = norm.forward_native(*inp.args())
    assert_same_result(got, want, tol=tolerance(case))
    for call in kernels.calls:  # nothing unsafe ever reached the kernel
        assert all(kernel_safe(call.name, t) for t in call.tensors.values()), call
    for t, b in zip([t for t in inp.args() if t is not None], before, strict=True):  # the caller's tensors untouched
        assert torch.equal(t, b)


KERNEL_CASES = [c.name for c in CASES if not any(k in c.name for k in ("zero", "dtype"))]


@pytest.mark.parametrize("case_name", KERNEL_CASES)
def test_guarded_call_equals_release_on_canonical_inputs(
    case_name: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """Bit for bit what the release's own entry gives for 2-D contiguous copies."""
    norm, inp, case = build(case_name, layernorm)
    got = entry_fn(layernorm, case.entry)(norm, *inp.args())
    rows = [t.contiguous().view(-1, t.shape[-1]) for t in inp.args() if t is not None]
    want = original_entry(layernorm, case.entry)(norm, *rows)
    shape = inp.x.shape
    want = tuple(w.view(shape) for w in want) if isinstance(want, tuple) else want.view(shape)
    assert_same_result(got, want, exact=True)


@pytest.mark.parametrize("case_name", [c.name for c in CASES if not c.name.startswith("safe")])
def test_unguarded_release_faults_or_is_wrong(case_name: str, layernorm: Any, kernels: AiterKernelDouble) -> None:
    """Without the guard, the release's own entry mis-reads this case (the bug, reproduced)."""
    norm, inp, case = build(case_name, layernorm)
    if FIXED_BY.get(case_name) in upstream_checks(layernorm, case.entry, inp.residual is not None):
        pytest.skip(f"n/a: sglang {sglang_version()} {case.entry} handles {case_name} itself")
    want = norm.forward_native(*inp.args())
    try:
        got = original_entry(layernorm, case.entry)(norm, *inp.args())
    except (MemoryAccessFault, InvalidConfiguration):
        return
    wrong, ref = (got[0], want[0]) if isinstance(want, tuple) else (got, want)
    assert wrong.shape != ref.shape or not torch.allclose(wrong.float(), ref.float(), rtol=1e-2, atol=1e-2)


def count_copies(fn: Any, *args: Any) -> int:
    with CopyCounter() as counter:
        fn(*args)
    return counter.copies


@pytest.mark.parametrize("case_name", [n for n in KERNEL_CASES if "post" not in n])
def test_guard_adds_no_second_copy(case_name: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None) -> None:
    """One copy at most per tensor that needs one; never more than the release's own fix makes."""
    norm, inp, case = build(case_name, layernorm)
    kernels.compute = kernels.record = False
    args = [t for t in inp.args() if t is not None]
    original = original_entry(layernorm, case.entry)
    own = count_copies(original, norm, *(t.contiguous().view(-1, t.shape[-1]) for t in args))  # its own work
    guarded_copies = count_copies(norm, *args)
    assert guarded_copies <= own + sum(1 for t in args if not t.is_contiguous())
    if FIXED_BY.get(case_name) in upstream_checks(layernorm, case.entry, inp.residual is not None):  # it copies
        assert guarded_copies <= count_copies(original, norm, *args)


@pytest.mark.parametrize("case_name", ["safe_2d", "safe_2d_residual", "contiguous_3d", "gemma_contiguous_3d"])
def test_safe_layouts_reach_the_kernel_without_a_copy(
    case_name: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """2-D contiguous: the very same objects; contiguous N-D: a view of the caller's storage."""
    norm, inp, _ = build(case_name, layernorm)
    norm(*inp.args())
    (call,) = kernels.calls
    if inp.x.dim() == 2:
        assert call.tensors["input"] is inp.x
        assert inp.residual is None or call.tensors["residual_in"] is inp.residual
    else:
        assert call.tensors["input"].data_ptr() == inp.x.data_ptr() and call.tensors["input"].dim() == 2


@pytest.mark.parametrize("entry", [RMS, GEMMA, LAYER])
def test_wrong_hidden_size_raises_like_native_and_never_reaches_the_kernel(
    entry: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """aiter's HIP kernel reads ``n`` weight elements whatever the weight's length: past a shorter
    one (a fault), or the first ``n`` of a longer one (wrong values).  Guarded, native's error."""
    require_entry(entry)
    norm = make_module(layernorm, entry, 128, DTYPE)
    for hidden in (64, 256):  # x's hidden shorter and longer than the weight
        x = torch.randn(4, hidden, dtype=DTYPE)
        with pytest.raises(Exception) as native:
            norm.forward_native(x)
        kernels.reset()
        with pytest.raises(type(native.value)):
            norm(x)
        assert kernels.calls == []


def test_release_without_an_aiter_entry_warns_once_and_raises_nothing(layernorm: Any) -> None:
    if hasattr(layernorm.RMSNorm, "forward_aiter"):
        pytest.skip(f"n/a: sglang {sglang_version()} has RMSNorm.forward_aiter")
    from conftest import run_python

    code = """
import logging; logging.basicConfig(level=logging.INFO)
from aiter_norm_guard.emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
aiter_norm_guard.install()
print([(t["name"], t["patched"]) for t in aiter_norm_guard.status()["targets"]])
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING:aiter_norm_guard")]
    assert len(warnings) == 1 and "no aiter branch" in warnings[0]
    assert "True" not in proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("x_shape", "res_shape"),
    [
        ((16, 128), (1, 16, 128)),
        ((4, 4, 128), (16, 128)),
        ((16, 128), (8, 128)),
        ((2, 8, 128), (2, 8, 128)),
        ((16, 128), (16, 1, 128)),
    ],
)
@pytest.mark.parametrize("entry", [RMS, GEMMA])
def test_residual_shape_semantics_are_natives(
    x_shape: tuple[int, ...],
    res_shape: tuple[int, ...],
    entry: str,
    layernorm: Any,
    kernels: AiterKernelDouble,
    guarded: None,
) -> None:
    """A residual of another shape than x: native broadcasts or raises, and so does the guarded call —
    the kernel would index it with x's rows.  Native's exceptions reach the caller unchanged.  Where
    native would broadcast x to more rows ((16, H) with (16, 1, H): (16, 16, H)), a clear error
    instead of a tensor many times the caller's."""
    require_entry(entry)
    norm = make_module(layernorm, entry, 128, DTYPE)
    x, res = torch.randn(x_shape, dtype=DTYPE), torch.randn(res_shape, dtype=DTYPE)
    if (
        ROWS_LAYOUT in upstream_checks(layernorm, entry, with_rows=True)
        and x.dim() != 2
        and res.shape != x.shape
        and res.numel() == x.numel()
        and res.shape[-1] == x.shape[-1]
    ):
        # the release reshapes x and the residual to (-1, n) rows itself (0.5.19+): its own result, untouched
        kernels.reset()
        got = norm(x, res)
        rows = [t for name, t in kernels.calls[0].tensors.items() if name != "weight"] if kernels.calls else []
        assert rows and all(t.dim() == 2 and t.is_contiguous() for t in rows)
        assert_same_result(got, original_entry(layernorm, entry)(norm, x, res), exact=True)
        return
    try:
        wide = math.prod(torch.broadcast_shapes(x.shape, res.shape)) > x.numel()
    except RuntimeError:  # incompatible shapes: native raises
        wide = False
    if wide:
        kernels.reset()
        with pytest.raises(ValueError, match="broadcast"):
            norm(x, res)
        assert kernels.calls == []
        return
    try:
        want = norm.forward_native(x, res)
    except Exception as exc:
        kernels.reset()
        with pytest.raises(type(exc)):
            norm(x, res)
        assert kernels.calls == []
        return
    assert_same_result(norm(x, res), want, tol=tolerance(BY_NAME["residual_path"]) if entry == RMS else 2**-6)


@pytest.mark.parametrize("entry", [RMS, GEMMA])
def test_native_exceptions_propagate_and_the_kernel_is_never_reached(
    entry: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None, caplog: pytest.LogCaptureFixture
) -> None:
    """x of 16 rows with a residual of 8, with and without an fp32 weight: native raises; the guard
    must neither swallow that nor call the kernel, and it is not an internal error of the guard."""
    require_entry(entry)
    x, res = torch.randn(16, 128, dtype=DTYPE), torch.randn(8, 128, dtype=DTYPE)
    for wdt in (DTYPE, torch.float32):
        norm = make_module(layernorm, entry, 128, DTYPE, wdt)
        with pytest.raises(Exception) as native:
            norm.forward_native(x, res)
        kernels.reset()
        with pytest.raises(type(native.value)):
            norm(x, res)
        assert kernels.calls == []
    assert not any("internal error" in r.getMessage() for r in caplog.records)


def test_strided_weight_goes_to_native_where_the_guard_looks(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """``weight.data = w[::2]``: the kernel reads it as contiguous.  sglang's loaders never make one;
    the guard checks it on the slow path (any unsafe activation), not on the safe path."""
    require_entry(RMS)
    norm = make_module(layernorm, RMS, 128, DTYPE)
    norm.weight.data = torch.randn(256, dtype=DTYPE)[::2]
    x = torch.randn(8, 4, 128, dtype=DTYPE)  # rank 3: the slow path
    kernels.reset()
    assert_same_result(norm(x), norm.forward_native(x))
    assert kernels.calls == []


def _pad_module(layernorm: Any, kernels: AiterKernelDouble) -> Any:
    require_entry(RMS)
    if "x_pad_to_multiple" not in layernorm.RMSNorm.__init__.__code__.co_varnames:
        pytest.skip(f"n/a: sglang {sglang_version()} has no x_pad_to_multiple")
    norm = layernorm.RMSNorm(96, eps=1e-6, x_pad_to_multiple=64).to(DTYPE)
    assert norm._fused_pad_kernel is not None  # the emulated aiter.ops.triton.fused_add_rmsnorm_pad
    norm.weight.data = torch.randn(96, dtype=DTYPE)
    return norm


@pytest.mark.parametrize("layout", ["2d", "transposed", "3d", "3d_strided"])
@pytest.mark.parametrize("with_residual", [False, True])
def test_pad_path_gives_the_originals_result_shape_included(
    layout: str, with_residual: bool, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """GPT-OSS's fused add + RMSNorm + pad: the result (padded last dim) is what the release
    returns for the same values in contiguous memory, on every path (the Triton kernel reads both
    strides, so the guard only checks the weight's length there)."""
    norm = _pad_module(layernorm, kernels)
    base = torch.randn(6, 4, 192, dtype=DTYPE)
    x = {
        "2d": base[0, :, :96].contiguous(),
        "transposed": torch.randn(96, 4, dtype=DTYPE).t(),
        "3d": base[:, :, :96].contiguous(),
        "3d_strided": base[:, :, :96],
    }[layout]
    args = (x, torch.randn(x.shape, dtype=DTYPE)) if with_residual else (x,)
    original = original_entry(layernorm, RMS)
    try:
        want = original(norm, *(a.contiguous() for a in args))
    except Exception as exc:  # the release's own error for this shape (the Triton wrapper is 2-D only)
        with pytest.raises(type(exc)):
            norm(*args)
        return
    assert_same_result(norm(*args), want, exact=True)


def test_pad_path_wrong_hidden_size_raises_like_native(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    norm = _pad_module(layernorm, kernels)
    x = torch.randn(4, 64, dtype=DTYPE)
    with pytest.raises(ValueError):
        norm.forward_native(x)
    kernels.reset()
    with pytest.raises(ValueError):
        norm(x)
    assert kernels.calls == []


@pytest.mark.parametrize("kind", ["expanded", "strided"])
@pytest.mark.parametrize("entry", [RMS, GEMMA, LAYER])
def test_a_weight_the_kernel_would_misread_goes_to_native_on_the_safe_path_too(
    kind: str, entry: str, layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """An expanded weight (stride 0) is read past its storage, a strided one wrongly: with a 2-D
    contiguous activation (the fast path) as with any other."""
    require_entry(entry)
    norm = make_module(layernorm, entry, 128, DTYPE)
    bad = torch.ones(1, dtype=DTYPE).expand(128) if kind == "expanded" else torch.randn(256, dtype=DTYPE)[::2]
    name = "gemma_weight" if entry == GEMMA and "gemma_weight" in norm._buffers else "weight"
    if name in norm._parameters:
        norm._parameters[name] = torch.nn.Parameter(bad, requires_grad=False)
    else:
        norm._buffers[name] = bad
    x = torch.randn(8, 128, dtype=DTYPE)
    kernels.reset()
    assert_same_result(norm(x), norm.forward_native(x), tol=2**-6 if entry == GEMMA else None)
    if WEIGHT_STRIDE in upstream_checks(layernorm, entry):  # 0.5.10's Gemma reads weight + 1: a new, contiguous tensor
        assert all(c.tensors["weight"].is_contiguous() for c in kernels.calls)
    else:
        assert kernels.calls == []


def test_an_older_forward_native_signature_still_gets_the_fallback(
    layernorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """A subclass whose forward_native takes (x, residual=None) only: the guard passes no trailing
    defaults it would not accept."""
    require_entry(RMS)

    class Older(layernorm.RMSNorm):  # type: ignore[misc,name-defined]
        def forward_native(self, x: torch.Tensor, residual: Any = None) -> Any:
            return super().forward_native(x, residual)

    norm = Older(128).to(DTYPE)
    empty = torch.randn(0, 128, dtype=DTYPE)
    assert norm(empty).shape == (0, 128)
