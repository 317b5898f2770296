"""Every guarded entry on a CUDA GPU, through a real sglang release (``.gpu/sglang-X`` on PYTHONPATH).

sglang's modules take their aiter branches (tests/gpu/rocm_on_cuda.py); the aiter kernels are
Triton kernels with aiter's contracts (tests/gpu/aiter_triton.py).  Device tensors, children
that may die of an illegal memory access, compute-sanitizer, CUDA-graph replay, torch.compile.
Skipped without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

from rocm_on_cuda import load  # noqa: E402

import aiter_norm_guard  # noqa: E402  (installs the guard before sglang imports)
from aiter_norm_guard.cli.cases import BY_NAME, CASES, GEMMA, LAYER, RMS, make_module  # noqa: E402
from aiter_norm_guard.cli.selftest import tolerance  # noqa: E402
from aiter_norm_guard.guard.guard import original_of  # noqa: E402
from aiter_norm_guard.install.locate import source_node, upstream  # noqa: E402
from aiter_norm_guard.kernels.needs import X_LAYOUT, ZERO_ROWS  # noqa: E402
from aiter_norm_guard.targets.layernorm import RMSNORM  # noqa: E402
from cuda_graphs import capture  # noqa: E402

HERE = Path(__file__).resolve().parent
CUDA = torch.device("cuda")
BF = torch.bfloat16
LN, QUANT = load(quant=True)
GUARDED = {t["name"] for t in aiter_norm_guard.status()["targets"] if t["patched"]}
RELEASE = aiter_norm_guard.status()["sglang"]["version"]


def need(entry: str) -> None:
    if entry not in GUARDED:
        pytest.skip(f"n/a: sglang {RELEASE} has no aiter branch in {entry}")


def close(got: Any, want: Any, tol: float | None = None) -> None:
    pairs = zip(got, want, strict=True) if isinstance(want, tuple) else [(got, want)]
    for g, w in pairs:
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


def test_the_release_is_real_and_guarded() -> None:
    import sglang

    assert ".gpu" in sglang.__file__ and RMS in GUARDED, (sglang.__file__, GUARDED)
    print(f"\nsglang {RELEASE} from {sglang.__file__}; guarded: {sorted(GUARDED)}")


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_guarded_matches_forward_native_on_device(name: str) -> None:
    case = BY_NAME[name]
    need(case.entry)
    inp = case.build(2048, BF, CUDA, torch.Generator().manual_seed(0))
    if case.uses_post and "post_residual_addition" not in LN.RMSNorm.forward_native.__code__.co_varnames:
        pytest.skip("n/a: no post_residual_addition")
    m = make_module(LN, case.entry, inp.hidden, BF, inp.weight_dtype, CUDA)
    close(m(*inp.args()), m.forward_native(*inp.args()), tolerance(case))


def probe(mode: str, *cases: str, sanitizer: bool = False) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
        "AITER_NORM_GUARD": "1" if mode == "guarded" else "0",
    }
    cmd = [sys.executable, str(HERE / "probe.py"), mode, *cases]
    if sanitizer:
        cmd = ["compute-sanitizer", "--tool", "memcheck", "--print-limit", "3", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


FAULTS = {  # case: (entry, what the release must do itself to handle it); each fails unguarded where it does not
    "qkv_q_view": (RMS, X_LAYOUT),
    "contiguous_3d": (RMS, X_LAYOUT),
    "zero_rows": (RMS, ZERO_ROWS),
    "gemma_zero_rows": (GEMMA, None),
    "gemma_contiguous_3d": (GEMMA, None),
    "layernorm_zero_rows": (LAYER, None),
}


def test_guarded_child_runs_every_fault_case_right() -> None:
    cases = [c for c, (entry, _) in FAULTS.items() if entry in GUARDED]
    good = probe("guarded", *cases)
    assert good.returncode == 0, good.stderr[-2000:]
    assert good.stdout.count("max abs error vs forward_native 0") == len(cases), good.stdout


@pytest.mark.parametrize("name", list(FAULTS))
def test_unguarded_child_dies_or_fails_where_the_release_lacks_the_check(name: str) -> None:
    entry, fixed_by = FAULTS[name]
    need(entry)
    if fixed_by is not None and fixed_by in upstream_checks():
        pytest.skip(f"n/a: sglang {RELEASE} has {fixed_by!r} itself")
    bad = probe("unguarded", name)
    text = (bad.stdout + bad.stderr).lower()
    assert bad.returncode != 0 and any(s in text for s in ("illegal memory access", "invalid configuration")), text
    print(f"\n{name}: unguarded child exit {bad.returncode}: {[ln for ln in text.splitlines() if 'error' in ln][-1:]}")


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not installed")
def test_memcheck_finds_out_of_bounds_reads_unguarded_and_none_guarded() -> None:
    done = upstream_checks()
    cases = [
        c
        for c in ("qkv_q_view", "contiguous_3d", "gemma_contiguous_3d")
        if FAULTS[c][0] in GUARDED and FAULTS[c][1] not in done
    ]
    if not cases:
        pytest.skip(f"n/a: sglang {RELEASE} reads these layouts right itself (the fused paths' memcheck still runs)")
    summaries = {}
    for mode in ("unguarded", "guarded"):
        proc = probe(mode, *cases, sanitizer=True)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR SUMMARY" in ln]
        summaries[mode] = lines[-1] if lines else "no summary"
        out = os.environ.get("OUT")
        if out:
            text = proc.stdout[-20000:] + "\n---\n" + proc.stderr[-20000:]
            Path(out, f"memcheck-{RELEASE}-{mode}.txt").write_text(text)
    print(f"\nmemcheck sglang {RELEASE} {cases}: {summaries}")
    assert "ERROR SUMMARY: 0 errors" in summaries["guarded"], summaries
    assert "ERROR SUMMARY" in summaries["unguarded"] and " 0 errors" not in summaries["unguarded"], summaries


def upstream_checks() -> frozenset[str]:
    """What this release's own forward_aiter does before its kernel (the upstream table, by fingerprint)."""
    row = upstream(RMSNORM, source_node(original_of(LN.RMSNorm.forward_aiter) or LN.RMSNorm.forward_aiter))
    return frozenset() if row is None else row.alone


GRAPH_CASES = {"qkv_q_view": RMS, "residual_path": RMS, "gemma_residual_3d": GEMMA, "layernorm_transposed": LAYER}


@pytest.mark.parametrize("name", list(GRAPH_CASES))
def test_cuda_graph_capture_and_replay_match_eager(name: str) -> None:
    case = BY_NAME[name]
    need(case.entry)
    inp = case.build(64, BF, CUDA, torch.Generator().manual_seed(0))  # decode-sized static buffers
    m = make_module(LN, case.entry, inp.hidden, BF, None, CUDA)
    args = [a for a in inp.args() if a is not None]
    replay, out = capture(lambda: m(*args))
    for _ in range(3):  # refill the static inputs in place, replay, compare with eager
        for a in args:
            (a._base if a._base is not None else a).copy_(torch.randn_like(a._base if a._base is not None else a))
        replay()
        torch.cuda.synchronize()
        close(out, m(*args), tolerance(case))


class QNormBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = make_module(LN, RMS, 128, BF, None, CUDA)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        return self.norm(qkv[:, :4096].view(qkv.shape[0], 32, 128))


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_keeps_the_guard_in_the_graph(backend: str) -> None:
    torch._dynamo.reset()
    block = QNormBlock()
    graphs: list[str] = []

    def recording(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(gm.code)
        return gm.forward if backend == "eager" else torch._inductor.compile(gm, example_inputs)

    compiled = torch.compile(block, backend=recording, fullgraph=True)
    qkv = torch.randn(256, 6144, device=CUDA, dtype=BF)
    close(compiled(qkv), block.norm.forward_native(qkv[:, :4096].view(256, 32, 128)))
    assert graphs and any("aiter_double.rmsnorm2d_fwd" in g for g in graphs), graphs
    if X_LAYOUT not in upstream_checks():  # the copy there is the guard's, not the release's
        assert any("contiguous" in g or "clone" in g for g in graphs), graphs


def test_layer_boundary_quant_on_device() -> None:
    quants = {"communicator._fused_rmsnorm_fp8_per_token_quant", "add_norm._fused_rmsnorm_fp8_per_token_quant"}
    if QUANT is None or not quants & GUARDED:
        pytest.skip(f"n/a: sglang {RELEASE} has no fused rmsnorm fp8 quant here")
    fn = QUANT._fused_rmsnorm_fp8_per_token_quant
    original = original_of(fn)
    w = torch.randn(4096, device=CUDA, dtype=BF)
    empty = fn(torch.empty(0, 4096, device=CUDA, dtype=BF), w, 1e-6)
    assert empty[0].shape == (0, 4096) and empty[1].shape == (0, 1)
    x = torch.randn(4096, 64, device=CUDA, dtype=BF).t()
    got, want = fn(x, w, 1e-6), original(x.contiguous(), w, 1e-6)
    assert torch.equal(got[0].float(), want[0].float()) and torch.equal(got[1], want[1])


FUSED = ("mla_k_rows", "ar_residual_rows")


def test_fused_paths_on_device_guarded_never_read_past_and_unguarded_do() -> None:
    """MLA's fused q / k RMSNorm (k read with q's rows) and the all-reduce fusion (a residual read flat
    with the input's numel), on Triton doubles of their contracts: guarded, sglang's answers (the
    native norm; None, the unfused route) and no illegal access; unguarded, the child dies or memcheck
    finds the reads past the tensors."""
    good = probe("guarded", *FUSED)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "guarded mla_k_rows: result [(2048, 1536), (64, 512)]" in good.stdout, good.stdout
    assert "guarded ar_residual_rows: result None" in good.stdout, good.stdout
    if shutil.which("compute-sanitizer") is None:
        return
    summaries = {}
    for mode in ("unguarded", "guarded"):
        proc = probe(mode, *FUSED, sanitizer=True)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR SUMMARY" in ln]
        summaries[mode] = lines[-1] if lines else "no summary"
    print(f"\nmemcheck fused paths {FUSED}: {summaries}")
    assert "ERROR SUMMARY: 0 errors" in summaries["guarded"], summaries
    assert " 0 errors" not in summaries["unguarded"], summaries


def qwen3_child(mode: str, sanitizer: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]), "AITER_NORM_GUARD": "1"}
    cmd = [sys.executable, str(HERE / "qwen3_decode.py"), mode]
    if sanitizer:
        cmd = ["compute-sanitizer", "--tool", "memcheck", "--print-limit", "3", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_qwen3_fused_decode_on_device_guarded_equals_the_unfused_route() -> None:
    """Qwen3's fused qk-norm + RoPE + KV write through the release's own forward and KV pool on CUDA, the kernel
    a Triton double that reads the cache through its strides (aiter since #4531): unguarded, a 3-D cache
    (<= 0.5.22) and fp32 norm weights come out wrong; guarded, q, K, V and the output equal the unfused route
    (within bf16 rounding where the fused kernel runs), with memcheck clean."""
    runs = {}
    for mode in ("unguarded", "guarded"):
        proc = qwen3_child(mode)
        if "no fused" in proc.stdout:
            pytest.skip(proc.stdout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nqwen3 decode on device, sglang {RELEASE}: {json.dumps(runs)}")
    if not runs["guarded"]["mrope_3d_cache"]["fused_gate"]:
        pytest.skip(f"n/a: sglang {RELEASE} has no Qwen3 fused decode")
    for case, got in runs["guarded"].items():
        if case != "interventions" and got["fused_gate"]:
            assert max(got["max_diff"].values()) <= 0.05, (case, got)
    assert max(runs["unguarded"]["fp32_norm_weights"]["max_diff"].values()) > 0.5
    if tuple(int(p) for p in RELEASE.split(".")[:3]) < (0, 5, 23):  # 0.5.23 passes unsqueeze(1) itself
        assert runs["unguarded"]["mrope_3d_cache"]["max_diff"]["k_cache"] > 0.5
    if shutil.which("compute-sanitizer"):
        proc = qwen3_child("guarded", sanitizer=True)
        summary = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR SUMMARY" in ln]
        print(f"memcheck qwen3 guarded: {summary[-1:]}")
        assert summary and "ERROR SUMMARY: 0 errors" in summary[-1], summary


COUNTED_CASES = ("qkv_q_view", "contiguous_3d", "noncontiguous_2d", "dtype_mismatch", "gemma_contiguous_3d")


@pytest.mark.parametrize("how", ["eager", "compiled"])
def test_cuda_graph_capture_counts_the_guards_change_as_captured(how: str) -> None:
    """A call the guard changes, captured in a CUDA graph (eager, or torch.compile'd then captured as sglang's
    --enable-torch-compile does) and replayed: status()["interventions"] counts it with mode "captured" (once
    per capture: a replay runs no Python), and the warm-up calls with their own mode."""
    from aiter_norm_guard.guard import interventions

    picked = None
    for name in COUNTED_CASES:  # the first case this release leaves to the guard
        case = BY_NAME[name]
        if case.entry not in GUARDED:
            continue
        inp = case.build(64, BF, CUDA, torch.Generator().manual_seed(0))
        m = make_module(LN, case.entry, inp.hidden, BF, inp.weight_dtype, CUDA)
        args = [a for a in inp.args() if a is not None]
        interventions.reset()
        m(*args)
        if interventions.snapshot():
            picked = (name, case, m, args)
            break
    if picked is None:
        pytest.skip(f"n/a: sglang {RELEASE} does itself what the guard would change in {COUNTED_CASES}")
    name, case, m, args = picked
    torch._dynamo.reset()
    fn = torch.compile(lambda *a: m(*a), backend="eager", fullgraph=True) if how == "compiled" else m
    interventions.reset()
    replay, out = capture(lambda: fn(*args))  # two warm-up calls on a side stream, then the capture
    for _ in range(5):
        replay()
    torch.cuda.synchronize()
    close(out, m.forward_native(*args), tolerance(case))
    by_mode: dict[str, int] = {}
    for c in interventions.snapshot():
        by_mode[c["mode"]] = by_mode.get(c["mode"], 0) + c["count"]
    print(f"\n{name} ({how}) captured and replayed 5 times, sglang {RELEASE}: {interventions.snapshot()}")
    warm = "compiled" if how == "compiled" else "eager"
    assert by_mode.get("captured", 0) >= 1, by_mode
    assert set(by_mode) == {warm, "captured"} and by_mode[warm] >= 2, by_mode  # the replays add nothing
    assert by_mode["captured"] == by_mode[warm] // 2, by_mode  # one capture, two warm-ups: per call
