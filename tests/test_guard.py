"""The guard on the installed sglang release's real RMSNorm, case by case.

These are the matrix's behavioural cases: each test skips as "n/a" where the release
has no such path.  The kernel double reads memory like aiter's HIP kernel, so an
unsafe layout that reached it would fault or give wrong values.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aiter_norm_guard.cases import BY_NAME, CASES, CaseInputs
from aiter_norm_guard.guard import signature_kind
from aiter_norm_guard_emulation import AiterKernelDouble, InvalidConfiguration, MemoryAccessFault
from aiter_norm_guard_emulation.counting import CopyCounter
from conftest import make_norm, original_forward, sglang_version, version_tuple

TOKENS = 2048
DTYPE = torch.bfloat16


def build(case_name: str, rmsnorm: Any) -> tuple[Any, CaseInputs]:
    case = BY_NAME[case_name]
    if case.uses_post and not signature_kind(original_forward(rmsnorm))[1]:
        pytest.skip(f"n/a: sglang {sglang_version()} forward_aiter has no post_residual_addition")
    inputs = case.build(TOKENS, DTYPE, torch.device("cpu"), torch.Generator().manual_seed(0))
    return make_norm(rmsnorm, inputs.hidden, DTYPE, inputs.weight_dtype), inputs


def assert_same_result(got: Any, want: Any, exact: bool = False, ulp: bool = False) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_result(g, w, exact, ulp)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        assert torch.equal(got, want)
    elif ulp:  # one bf16 ulp at |v| < 4: the aiter path adds residual + post in bf16, native in fp32
        torch.testing.assert_close(got, want, rtol=2**-6, atol=2**-6)
    else:
        torch.testing.assert_close(got, want)


def kernel_safe(t: torch.Tensor) -> bool:
    return t.dim() == 2 and t.is_contiguous() and t.numel() > 0


@pytest.mark.parametrize("case_name", [c.name for c in CASES])
def test_guarded_call_matches_forward_native(
    case_name: str, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    norm, inp = build(case_name, rmsnorm)
    before = [t.clone() for t in inp.args()]
    got = norm(*inp.args())  # sglang's own dispatch: forward -> _forward_method -> forward_aiter
    want = norm.forward_native(*inp.args())
    assert_same_result(got, want, ulp=inp.post is not None)
    for call in kernels.calls:  # nothing unsafe ever reached the kernel
        assert all(kernel_safe(t) for t in call.tensors.values() if t.dim() > 1), call
    for t, b in zip(inp.args(), before, strict=True):  # the caller's tensors are untouched
        assert torch.equal(t, b)


KERNEL_CASES = [
    "qkv_q_view",
    "qkv_k_view",
    "residual_path",
    "post_residual_path",
    "noncontiguous_2d",
    "contiguous_3d",
    "safe_2d",
    "safe_2d_residual",
]


@pytest.mark.parametrize("case_name", KERNEL_CASES)
def test_guarded_call_equals_release_on_canonical_inputs(
    case_name: str, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    """Bit for bit what the release's own forward_aiter gives for 2-D contiguous copies."""
    norm, inp = build(case_name, rmsnorm)
    got = norm(*inp.args())
    rows = [t.contiguous().view(-1, t.shape[-1]) for t in inp.args()]
    want = original_forward(rmsnorm)(norm, *rows)
    if isinstance(want, tuple):
        want = (want[0].view(inp.x.shape), want[1].view(inp.residual.shape))
    else:
        want = want.view(inp.x.shape)
    assert_same_result(got, want, exact=True)


UNSAFE = [
    "qkv_q_view",
    "qkv_k_view",
    "residual_path",
    "post_residual_path",
    "zero_rows",
    "zero_rows_residual",
    "dtype_mismatch",
    "noncontiguous_2d",
    "contiguous_3d",
]


def upstream_fixes(case_name: str) -> bool:
    """Whether this release's own forward_aiter already handles the case (release table)."""
    v = version_tuple(sglang_version())
    if v >= (0, 5, 23):
        return True  # full guard; CPU tensors also go to forward_native
    if case_name in ("zero_rows", "zero_rows_residual", "dtype_mismatch"):
        return v >= (0, 5, 16)
    if case_name in ("residual_path", "post_residual_path"):
        return v >= (0, 5, 20)
    return v >= (0, 5, 11)


@pytest.mark.parametrize("case_name", UNSAFE)
def test_unguarded_release_faults_or_is_wrong(case_name: str, rmsnorm: Any, kernels: AiterKernelDouble) -> None:
    """Without the guard, the release's own forward_aiter mis-reads this case (the bug, reproduced)."""
    if upstream_fixes(case_name):
        pytest.skip(f"n/a: sglang {sglang_version()} handles {case_name} itself")
    norm, inp = build(case_name, rmsnorm)
    want = norm.forward_native(*inp.args())
    try:
        got = original_forward(rmsnorm)(norm, *inp.args())
    except (MemoryAccessFault, InvalidConfiguration):
        return
    wrong = got if not isinstance(got, tuple) else got[0]
    ref = want if not isinstance(want, tuple) else want[0]
    assert wrong.shape != ref.shape or not torch.allclose(wrong.float(), ref.float(), rtol=1e-2, atol=1e-2)


def count_copies(fn: Any, *args: Any) -> CopyCounter:
    with CopyCounter() as counter:
        fn(*args)
    return counter


@pytest.mark.parametrize(
    "case_name",
    ["qkv_q_view", "qkv_k_view", "residual_path", "noncontiguous_2d", "contiguous_3d", "safe_2d", "safe_2d_residual"],
)
def test_guard_adds_no_second_copy(case_name: str, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None) -> None:
    """One copy at most per tensor that needs one; never more than the release's own fix makes."""
    norm, inp = build(case_name, rmsnorm)
    kernels.compute = kernels.record = False
    guarded_copies = count_copies(norm, *inp.args()).copies
    if upstream_fixes(case_name):  # the release copies by itself: the guard must not add one
        assert guarded_copies <= count_copies(original_forward(rmsnorm), norm, *inp.args()).copies
    else:
        assert guarded_copies <= sum(1 for t in inp.args() if not t.is_contiguous())


@pytest.mark.parametrize("case_name", ["safe_2d", "safe_2d_residual"])
def test_safe_layout_reaches_kernel_as_the_same_object(
    case_name: str, rmsnorm: Any, kernels: AiterKernelDouble, guarded: None
) -> None:
    if version_tuple(sglang_version()) >= (0, 5, 23):
        pytest.skip("n/a: sglang >= 0.5.23 sends CPU tensors to forward_native")
    norm, inp = build(case_name, rmsnorm)
    norm(*inp.args())
    (call,) = kernels.calls
    assert call.tensors["input"] is inp.x
    if inp.residual is not None:
        assert call.tensors["residual_in"] is inp.residual


def test_contiguous_3d_is_passed_as_a_view(rmsnorm: Any, kernels: AiterKernelDouble, guarded: None) -> None:
    if version_tuple(sglang_version()) >= (0, 5, 23):
        pytest.skip("n/a: sglang >= 0.5.23 sends CPU tensors to forward_native")
    norm, inp = build("contiguous_3d", rmsnorm)
    norm(inp.x)
    (call,) = kernels.calls
    assert call.tensors["input"].data_ptr() == inp.x.data_ptr()
    assert call.tensors["input"].shape == (TOKENS * 32, 128)


def test_wrong_hidden_size_still_raises(rmsnorm: Any, kernels: AiterKernelDouble, guarded: None) -> None:
    norm = make_norm(rmsnorm, 128, DTYPE)
    x = torch.randn(4, 64, dtype=DTYPE)
    with pytest.raises(Exception) as guarded_exc:
        norm(x)
    with pytest.raises(Exception) as original_exc:
        original_forward(rmsnorm)(norm, x)
    if version_tuple(sglang_version()) < (0, 5, 23):
        assert type(guarded_exc.value) is type(original_exc.value)


def test_release_without_forward_aiter_warns_once_and_raises_nothing(layernorm: Any) -> None:
    if hasattr(layernorm.RMSNorm, "forward_aiter"):
        pytest.skip(f"n/a: sglang {sglang_version()} has RMSNorm.forward_aiter")
    from conftest import run_python

    code = """
import logging; logging.basicConfig(level=logging.INFO)
from aiter_norm_guard_emulation import EmulatedRocm
EmulatedRocm().activate()
import aiter_norm_guard
import sglang.srt.layers.layernorm as ln
aiter_norm_guard.install()
print(aiter_norm_guard.status()["targets"][0])
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING:aiter_norm_guard")]
    assert len(warnings) == 1 and "not found" in warnings[0]
    assert "'found': False" in proc.stdout and "'patched': False" in proc.stdout


def test_row_strided_mode_hands_the_callers_view_to_the_kernel(
    rmsnorm: Any, kernels: AiterKernelDouble, guarded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AITER_NORM_GUARD_ROW_STRIDED=1: a 2-D row-strided view reaches aiter as itself, no copy."""
    if version_tuple(sglang_version()) >= (0, 5, 11):
        pytest.skip(f"n/a: sglang {sglang_version()} copies non-contiguous x itself")
    import aiter_norm_guard

    qkv = torch.randn(64, 6144, dtype=DTYPE)
    view = qkv[:, :4096]  # unit last stride, row pitch 6144
    norm = make_norm(rmsnorm, 4096, DTYPE)
    monkeypatch.setenv("AITER_NORM_GUARD_ROW_STRIDED", "1")
    aiter_norm_guard.uninstall()
    try:
        assert aiter_norm_guard.install(force=True)["row_strided"] is True
        kernels.compute = False
        with CopyCounter() as counter:
            norm(view)
        assert counter.copies == 0
        (call,) = kernels.calls
        assert call.tensors["input"] is view
        kernels.compute = True
        torch.testing.assert_close(norm(view), norm.forward_native(view))
    finally:
        monkeypatch.delenv("AITER_NORM_GUARD_ROW_STRIDED")
        aiter_norm_guard.uninstall()
        assert aiter_norm_guard.install(force=True)["row_strided"] is False
