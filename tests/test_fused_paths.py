"""The fused aiter norm paths, through sglang's own callers, on every pinned release that has them.

Each family runs in a fresh interpreter (tests/support/fused_*.py: they mutate global state)
behind the emulated ROCm + aiter, whose kernel doubles read memory by the same contracts the
guard reads.  Per case: the release unguarded (the double faults, refuses or misreads), guarded,
and the reference.  What the scripts replace is never a norm (``stubbed_norm_kernels`` is empty):
  a. ``RMSNorm.forward_with_allreduce_fusion`` (-> ``GroupCoordinator.fused_allreduce_rmsnorm``), a
     real world of two (spawn, gloo, sglang's own TP=2 init), the TP group's ``ca_comm`` the
     emulation's ``CustomAllreduceDouble`` over a gloo all-reduce; reference: sglang's unfused route
     (``ca_comm`` None: all-reduce + ``norm.forward``), and native norms on the reduced input.
  b. ``forward_absorb_(rocm_)prepare`` of a real tiny ``DeepseekV2AttentionMLA`` up to ``q_b_proj``
     (the module global ``fused_qk_rmsnorm_bf16`` on q / k_nope column slices of the latent);
     reference: the same method's own non-aiter branch with native norms.
  c. gfx950: add_norm's ``_update_and_read_residual_aiter_mxfp4`` / ``_fp8_group`` (0.5.21+), else
     ``LayerCommunicator.prepare_attn`` (Triton ``fused_rms_mxfp4_quant`` / ``fused_rms_fp8_group_quant``).
  d. The diffusion runtime's ``RMSNorm.forward_aiter`` through the module's ``forward``.
  e. Qwen3's fused qk-norm + RoPE + KV write through a real ``Qwen3Attention.forward`` and a real
     ``MHATokenToKVPool`` (the double writes the cache as aiter since #4531 / #4312 does); reference:
     the release's own unfused route (its fusion switched off: native prepare, the pool's store).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python, sglang_version, version_tuple

SUPPORT = Path(__file__).resolve().parent / "support"
V = version_tuple(sglang_version())
pytestmark = pytest.mark.skipif(V < (0, 5, 10), reason=f"n/a: sglang {sglang_version()} has no fused aiter norm path")


def sglang_file(rel: str) -> Path | None:
    """``sglang/<rel>`` of the installed release, found without importing sglang."""
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.exists() else None


def missing(*rels: str, defining: str = "") -> str | None:
    """Why this release has none of ``rels`` (or none with ``def <defining>``); None if it has one."""
    paths = [p for p in map(sglang_file, rels) if p is not None]
    if not paths:
        return f"n/a: sglang {sglang_version()} has no {' or '.join(rels)}"
    if defining and not any(f"def {defining}(" in p.read_text() for p in paths):
        return f"n/a: sglang {sglang_version()}'s {' / '.join(rels)} has no {defining}"
    return None


def mla_missing() -> str | None:
    methods = "srt/models/deepseek_common/attention_forward_methods"
    reason = missing(f"{methods}/forward_mla.py", f"{methods}/forward_mla_rocm.py")
    if reason is None and V < (0, 5, 11):
        reason = f"n/a: sglang {sglang_version()} has no fused_qk_rmsnorm_bf16 in its MLA forward"
    return reason


#: script -> (why it does not apply here, or None; its environment)
SCRIPTS = {
    "fused_allreduce.py": (
        lambda: missing("srt/distributed/parallel_state.py", defining="fused_allreduce_rmsnorm"),
        {},
    ),
    "fused_mla.py": (mla_missing, {}),
    "fused_quant_gfx95.py": (lambda: None, {}),
    "fused_diffusion.py": (
        lambda: missing("multimodal_gen/runtime/layers/layernorm.py", defining="forward_aiter"),
        {"BARE_PACKAGE": "1" if V < (0, 5, 21) else "0"},
    ),
    "fused_qwen3.py": (
        lambda: (
            missing("srt/models/qwen3.py", defining="forward_prepare_aiter_fused_mrope")
            and missing("srt/models/qwen3.py", defining="forward_prepare_aiter_fused")
        ),
        {},
    ),
}
_RUNS: dict[str, Future[subprocess.CompletedProcess[str]]] = {}


def run_script(name: str) -> dict[str, Any]:
    """The script's JSON line; every script that applies here is started at the first call, all at once."""
    reason = SCRIPTS[name][0]()
    if reason:
        pytest.skip(reason)
    if not _RUNS:
        pool = ThreadPoolExecutor(max_workers=len(SCRIPTS))
        for script, (na, env) in SCRIPTS.items():
            if not na():
                code = f"import runpy; runpy.run_path({str(SUPPORT / script)!r}, run_name='__main__')"
                _RUNS[script] = pool.submit(run_python, code, env)
        pool.shutdown(wait=False)
    proc = _RUNS[name].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same result: bit for bit, or the same exception and message."""
    keys = ("values",) if a["outcome"] == "ok" else ("detail",)
    return a["outcome"] == b["outcome"] and all(a.get(k) == b.get(k) for k in keys)


# -- a. all-reduce + RMSNorm --------------------------------------------------------------------
@pytest.fixture(scope="module")
def allreduce() -> list[dict[str, Any]]:
    out = run_script("fused_allreduce.py")
    for rank in out["ranks"]:
        assert "error" not in rank, rank.get("trace")
        assert rank["stubbed_norm_kernels"] == []
    return out["ranks"]  # type: ignore[no-any-return]


def test_allreduce_fusion_safe_input_takes_the_fused_kernel_bit_exact(allreduce: list[dict[str, Any]]) -> None:
    for rank in allreduce:
        got = rank["safe"]
        assert got["unguarded"]["kernels"] == got["guarded"]["kernels"] == ["fused_allreduce_rmsnorm"]
        assert got["guarded"]["outcome"] == "ok" and same(got["guarded"], got["unguarded"])


@pytest.mark.parametrize(
    ("case", "unguarded"),
    [
        ("zero_rows", "InvalidConfiguration"),
        ("transposed", "wrong"),
        ("short_weight", "wrong"),
        ("fp32_weight", "wrong"),
    ],
)
def test_allreduce_fusion_hazard_takes_sglangs_unfused_route_guarded(
    case: str, unguarded: str, allreduce: list[dict[str, Any]]
) -> None:
    for rank in allreduce:
        got = rank[case]
        before = got["unguarded"]
        assert before["kernels"] == ["fused_allreduce_rmsnorm"]
        if unguarded == "wrong":  # the double read it as the contract says: not what sglang's unfused route gives
            assert before["outcome"] == "ok" and not same(before, got["unfused"]), before
        else:
            assert before["outcome"] == unguarded, before
        assert "fused_allreduce_rmsnorm" not in got["guarded"]["kernels"]
        assert same(got["guarded"], got["unfused"]), (got["guarded"], got["unfused"])
        assert got["unfused"]["outcome"] == got["native"]["outcome"]  # native: the same values within bf16


# -- b. MLA fused q / k RMSNorm -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mla() -> dict[str, Any]:
    out = run_script("fused_mla.py")
    assert out["stubbed_norm_kernels"] == []
    return out


def test_mla_qk_rmsnorm_safe_column_slices_are_bit_exact(mla: dict[str, Any]) -> None:
    got = mla["safe"]
    assert got["unguarded"]["kernels"] == got["guarded"]["kernels"] == ["fused_qk_rmsnorm"]
    assert got["guarded"]["outcome"] == "ok" and same(got["guarded"], got["unguarded"])
    assert got["native"]["outcome"] == "ok"


# -- c. Triton fused RMSNorm + quant (gfx95) -------------------------------------------------------
@pytest.fixture(scope="module")
def quant() -> dict[str, Any]:
    out = run_script("fused_quant_gfx95.py")
    assert out["stubbed_norm_kernels"] == []
    return out


@pytest.mark.parametrize("case", ["fp8_safe", "fp8_safe_residual", "mxfp4_safe", "mxfp4_safe_residual"])
def test_triton_quant_safe_inputs_are_bit_exact(case: str, quant: dict[str, Any]) -> None:
    got = quant[case]
    assert got["guarded"]["outcome"] == "ok" and len(got["guarded"]["kernels"]) == 1
    assert same(got["guarded"], got["unguarded"])


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("fp8_short_weight", "hidden size"),
        ("mxfp4_short_weight", "hidden size"),
        ("mxfp4_residual_fewer_rows", "residual"),
    ],
)
def test_triton_quant_read_past_unguarded_is_a_value_error_guarded(
    case: str, reason: str, quant: dict[str, Any]
) -> None:
    got = quant[case]
    assert got["unguarded"]["outcome"] == "MemoryAccessFault", got["unguarded"]
    assert got["guarded"]["outcome"] == "ValueError" and reason in got["guarded"]["detail"]
    assert got["guarded"]["kernels"] == []


@pytest.mark.parametrize("case", ["fp8_fp32_residual", "mxfp4_fp32_residual"])
def test_triton_quant_residual_of_another_dtype_gets_the_releases_result(case: str, quant: dict[str, Any]) -> None:
    """The kernel reads res1 in its own dtype and adds in fp32 (``Rows(dtype=OWN)``): the release is right,
    and the guarded call is the release's, bit for bit, through the kernel."""
    got = quant[case]
    assert got["unguarded"]["outcome"] == "ok", got["unguarded"]
    assert same(got["guarded"], got["unguarded"]) and len(got["guarded"]["kernels"]) == 1


@pytest.mark.parametrize("case", ["fp8_strided_weight", "mxfp4_strided_weight"])
def test_triton_quant_strided_weight_is_read_as_its_contiguous_copy(case: str, quant: dict[str, Any]) -> None:
    """The kernel reads the weight one element apart: unguarded it reads the wrong elements; guarded it gets
    one contiguous copy, and the result is the release's with that copy."""
    got = quant[case]
    assert got["unguarded"]["outcome"] == "ok" and not same(got["unguarded"], got["contiguous"])
    assert same(got["guarded"], got["contiguous"]) and len(got["guarded"]["kernels"]) == 1


def test_triton_quant_mxfp4_transposed_input_is_read_as_its_contiguous_copy(quant: dict[str, Any]) -> None:
    got = quant["mxfp4_transposed"]
    assert got["unguarded"]["outcome"] == "ok" and not same(got["unguarded"], got["contiguous"])
    assert same(got["guarded"], got["contiguous"])


# -- d. the diffusion runtime's RMSNorm.forward_aiter ---------------------------------------------
@pytest.fixture(scope="module")
def diffusion() -> dict[str, Any]:
    out = run_script("fused_diffusion.py")
    assert out["stubbed_norm_kernels"] == [] and "multimodal_gen RMSNorm.forward_aiter" in out["guarded_entries"]
    return out


@pytest.mark.parametrize("case", ["safe", "safe_residual"])
def test_diffusion_rmsnorm_safe_inputs_are_the_releases_bit_for_bit(case: str, diffusion: dict[str, Any]) -> None:
    got = diffusion[case]
    assert got["guarded"]["outcome"] == "ok" and got["guarded"]["kernels"] == got["unguarded"]["kernels"] != []
    assert same(got["guarded"], got["unguarded"])


@pytest.mark.parametrize(
    ("path", "case", "unguarded"),
    [
        ("mla", "zero_rows", "InvalidConfiguration"),
        ("mla", "short_k_weight", "MemoryAccessFault"),
        ("mla", "fp32_k_weight", "AssertionError"),  # aiter's own AITER_CHECK
        ("diffusion", "zero_rows", "InvalidConfiguration"),
        ("diffusion", "zero_rows_residual", "InvalidConfiguration"),
        ("diffusion", "short_weight", "MemoryAccessFault"),
        ("diffusion", "residual_fewer_rows", "MemoryAccessFault"),
    ],
)
def test_mla_and_diffusion_hazard_fails_unguarded_and_is_native_guarded(
    path: str, case: str, unguarded: str, request: pytest.FixtureRequest
) -> None:
    """b. (MLA's fused q / k RMSNorm) and d. (the diffusion runtime's RMSNorm): the release fails, the guard
    reaches no kernel and gives the native norm's result."""
    got = request.getfixturevalue(path)[case]
    assert got["unguarded"]["outcome"] == unguarded, got["unguarded"]
    assert got["guarded"]["kernels"] == []
    assert same(got["guarded"], got["native"]), (got["guarded"], got["native"])


# -- e. Qwen3's fused qk-norm + RoPE + KV write: not guarded, and why that is safe -------------------
SET_KV = "aiter_fused_qk_norm_rope_set_kv"  # 0.5.23's module function the fused method calls
FUSED_PREFIX = "forward_prepare_aiter"  # forward_prepare_aiter_fused_mrope (0.5.10 - 0.5.22), _fused (0.5.23)


def assigns(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)


def qwen3() -> ast.Module:
    reason = missing("srt/models/qwen3.py")
    if reason:
        pytest.skip(reason)
    path = sglang_file("srt/models/qwen3.py")
    assert path is not None
    return ast.parse(path.read_text())


def function(tree: ast.AST, name: str) -> ast.FunctionDef:
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, name
    return found[0]


def fused_methods(tree: ast.Module) -> list[ast.FunctionDef]:
    methods = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith(FUSED_PREFIX)]
    if not methods:
        pytest.skip(f"n/a: sglang {sglang_version()}'s qwen3.py has no aiter fused qk-norm path")
    return methods


def test_qwen3_fused_gate_excludes_rl_on_policy_target() -> None:
    """The fused call runs only under ``if use_aiter_fused``, whose every true assignment requires
    ``rl_on_policy_target is None`` (directly or through ``can_try_aiter_fused``): the fp32 norm
    weights ``rl_on_policy_target`` builds never reach the kernel."""
    tree = qwen3()
    names = {m.name for m in fused_methods(tree)}
    attention = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "Qwen3Attention")
    forward = function(attention, "forward")
    gates = {
        t.id: n.value
        for n in ast.walk(forward)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id in ("use_aiter_fused", "can_try_aiter_fused")
    }
    texts = {k: ast.unparse(v) for k, v in gates.items()}
    assert "rl_on_policy_target is None" in texts.get("can_try_aiter_fused", texts["use_aiter_fused"])
    for node in ast.walk(forward):
        if assigns(node, "use_aiter_fused"):
            value = ast.unparse(node.value)  # type: ignore[attr-defined]
            ifs = [n for n in ast.walk(forward) if isinstance(n, ast.If) and node in ast.walk(n)]
            enclosing = [ast.unparse(n.test) for n in ifs]
            assert value == "False" or "rl_on_policy_target is None" in value or "can_try_aiter_fused" in enclosing
    calls = [n for n in ast.walk(forward) if isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1] in names]
    gated = [n for n in ast.walk(forward) if isinstance(n, ast.If) and ast.unparse(n.test) == "use_aiter_fused"]
    assert calls and all(any(c in ast.walk(s) for g in gated for s in g.body) for c in calls)


def test_qwen3_fused_kernel_gets_the_fresh_qkv_projection() -> None:
    """``qkv`` is assigned once, from ``self.qkv_proj(hidden_states)`` (a fresh contiguous GEMM output),
    and reaches the kernel as itself or a ``.view`` of it."""
    tree = qwen3()
    for method in fused_methods(tree):
        assigned = [
            n
            for n in ast.walk(method)
            if isinstance(n, ast.Assign)
            and any(isinstance(e, ast.Name) and e.id == "qkv" for t in n.targets for e in ast.walk(t))
        ]
        assert [ast.unparse(n.value) for n in assigned] == ["self.qkv_proj(hidden_states)"]
        helper = [n for n in ast.walk(method) if isinstance(n, ast.Call) and ast.unparse(n.func) == SET_KV]
        for call in helper:  # 0.5.23: the module function gets qkv first, and never rebinds it
            assert ast.unparse(call.args[0]) == "qkv"
            fn = function(tree, SET_KV)
            assert not [n for n in ast.walk(fn) if assigns(n, "qkv")]
            assert "qkv.view(num_tokens, -1, head_dim)" in ast.unparse(fn)


@pytest.fixture(scope="module")
def qwen3_decode() -> dict[str, Any]:
    out = run_script("fused_qwen3.py")
    assert out["stubbed_norm_kernels"] == []
    assert set(out["fused_method"]) <= {"forward_prepare_aiter_fused_mrope", "forward_prepare_aiter_fused"}
    assert f"Qwen3Attention.{out['fused_method'][0]}" in out["guarded_entries"]
    return out


QWEN3_FUSED = ("fused_qk_norm_mrope_3d_cache_pts_quant_shuffle", "fused_qk_norm_rope_cache_pts_quant_shuffle")
QWEN3_CASES = (
    "mrope_3d_cache",
    "mrope_fp8_kv_scaled",
    "rope_1d",
    "head_dim_512",
    "head_dim_512_mrope",
    "fp32_norm_weights",
    "zero_tokens",
)


def max_diff(a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """Per tensor (q, K buffer, V buffer, layer output), the largest difference (fp8: raw bytes that differ)."""
    import torch

    out = []
    for (shape_a, dtype, va), (shape_b, _, vb) in zip(a["values"], b["values"], strict=True):
        assert shape_a == shape_b
        ta, tb = torch.tensor(va), torch.tensor(vb)
        out.append(float((ta != tb).sum()) if dtype.startswith("torch.float8") else float((ta - tb).abs().max()))
    return out


@pytest.mark.parametrize("case", QWEN3_CASES)
def test_qwen3_guarded_decode_equals_the_unfused_route(case: str, qwen3_decode: dict[str, Any]) -> None:
    """Guarded: q, the whole K and V buffers and the layer output are the release's unfused route's:
    bit for bit where the guard took that route, within bf16 rounding where the fused kernel ran."""
    got = qwen3_decode[case]
    if not got["fused_gate"]:
        pytest.skip(f"n/a: sglang {sglang_version()} does not send {case} to the fused kernel")
    guarded, unfused = got["guarded"], got["unfused"]
    if unfused["outcome"] != "ok":  # zero tokens: the release's own route raises, and so does the guarded call
        assert (guarded["outcome"], guarded["detail"]) == (unfused["outcome"], unfused["detail"])
        return
    assert guarded["outcome"] == "ok", guarded
    fused = [k for k in guarded["kernels"] if k in QWEN3_FUSED]
    diffs = max_diff(guarded, unfused)
    if fused:
        assert len(fused) == 1 and max(diffs) <= 0.05, (fused, diffs)
    else:
        assert diffs == [0.0, 0.0, 0.0, 0.0], diffs


@pytest.mark.parametrize(
    "case", ["mrope_3d_cache", "mrope_fp8_kv_scaled", "head_dim_512", "head_dim_512_mrope", "fp32_norm_weights"]
)
def test_qwen3_hazard_is_wrong_or_raises_unguarded(case: str, qwen3_decode: dict[str, Any]) -> None:
    """Unguarded, where the release sends the hazard to the fused kernel: an error, or q / KV / output off."""
    got = qwen3_decode[case]
    kernels = got["unguarded"]["kernels"]
    if not any(k in QWEN3_FUSED for k in kernels):
        pytest.skip(f"n/a: sglang {sglang_version()} keeps {case} off the fused kernel itself")
    if case == "mrope_3d_cache" and V >= (0, 5, 23):
        pytest.skip("n/a: 0.5.23 passes the cache as unsqueeze(1) itself")
    if got["unguarded"]["outcome"] == "ok":
        assert max(max_diff(got["unguarded"], got["unfused"])) > 0.5
    else:
        assert "AITER_CHECK" in got["unguarded"]["detail"]


def test_qwen3_in_contract_decode_reaches_the_fused_kernel_once(qwen3_decode: dict[str, Any]) -> None:
    got = qwen3_decode["mrope_3d_cache"]
    assert got["fused_gate"]
    assert got["guarded"]["kernels"] == ["fused_qk_norm_mrope_3d_cache_pts_quant_shuffle"]
    if qwen3_decode["rope_1d"]["fused_gate"]:
        assert qwen3_decode["rope_1d"]["guarded"]["kernels"] == ["fused_qk_norm_rope_cache_pts_quant_shuffle"]
