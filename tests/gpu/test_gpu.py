"""The guard on a CUDA GPU: device tensors, CUDA graph replay, torch.compile, raw-pointer OOB.

Skipped without a GPU.  The kernel double is a Triton kernel with aiter's contract
(``aiter_triton``), the module a stand-in for sglang 0.5.10's RMSNorm (``standin``)
patched through the guard's real patcher.
"""

from __future__ import annotations

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

import standin  # noqa: E402
from aiter_norm_guard.cases import BY_NAME, CASES  # noqa: E402
from aiter_norm_guard.patcher import Patcher  # noqa: E402
from cuda_graphs import capture  # noqa: E402
from probe import TARGET  # noqa: E402

HERE = Path(__file__).resolve().parent
CUDA = torch.device("cuda")


@pytest.fixture
def guard() -> Any:
    p = Patcher((TARGET,))
    p.install()
    yield p
    p.uninstall()


def make(hidden: int, weight_dtype: torch.dtype | None = None) -> standin.RMSNorm:
    m = standin.RMSNorm(hidden).to(CUDA)
    m.weight.data = (1 + 0.1 * torch.randn(hidden, device=CUDA)).to(weight_dtype or torch.bfloat16)
    return m


def close(got: Any, want: Any, post: bool = False) -> None:
    tol = {"rtol": 2**-6, "atol": 2**-6} if post else {}
    pairs = zip(got, want, strict=True) if isinstance(want, tuple) else [(got, want)]
    for g, w in pairs:
        torch.testing.assert_close(g, w, **tol)


GPU_CASES = [c.name for c in CASES]


@pytest.mark.parametrize("name", GPU_CASES)
def test_guarded_matches_forward_native_on_device(name: str, guard: Patcher) -> None:
    inp = BY_NAME[name].build(2048, torch.bfloat16, CUDA, torch.Generator().manual_seed(0))
    m = make(inp.hidden, inp.weight_dtype)
    close(m(*inp.args()), m.forward_native(*inp.args()), post=inp.post is not None)


def _child(mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    return subprocess.run(
        [sys.executable, str(HERE / "probe.py"), mode], capture_output=True, text=True, env=env, timeout=300
    )


def test_unguarded_views_read_out_of_bounds_and_guarded_do_not() -> None:
    bad = _child("unguarded")
    assert bad.returncode != 0 and "illegal memory access" in (bad.stderr + bad.stdout).lower(), bad.stderr[-2000:]
    good = _child("guarded")
    assert good.returncode == 0, good.stderr[-2000:]
    assert good.stdout.count("max abs error vs forward_native 0") == 2


def test_unguarded_transposed_view_gives_wrong_results() -> None:
    inp = BY_NAME["noncontiguous_2d"].build(256, torch.bfloat16, CUDA, torch.Generator().manual_seed(0))
    m = make(inp.hidden)
    got = m.forward_aiter(inp.x)
    assert not torch.allclose(got.float(), m.forward_native(inp.x).float(), atol=1e-2, rtol=1e-2)


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not installed")
def test_memcheck_reports_oob_without_guard_and_is_clean_with_it() -> None:
    summaries = {}
    for mode in ("unguarded", "guarded"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        proc = subprocess.run(
            [
                "compute-sanitizer",
                "--tool",
                "memcheck",
                "--print-limit",
                "3",
                sys.executable,
                str(HERE / "probe.py"),
                mode,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        line = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR SUMMARY" in ln]
        summaries[mode] = line[-1] if line else "no summary"
        out = os.environ.get("OUT")
        if out:
            Path(out, f"memcheck-{mode}.txt").write_text(
                proc.stdout[-20000:] + "\n---stderr---\n" + proc.stderr[-20000:]
            )
    assert "0 errors" not in summaries["unguarded"] and "ERROR SUMMARY" in summaries["unguarded"], summaries
    assert "ERROR SUMMARY: 0 errors" in summaries["guarded"], summaries


def _graph_replay(inputs: list[torch.Tensor], fill: list[torch.Tensor], call: Any) -> None:
    replay, out = capture(call)
    for _ in range(3):  # refill the static inputs, replay, compare with eager
        for buf in fill:
            buf.copy_(torch.randn_like(buf))
        replay()
        torch.cuda.synchronize()
        close(out, call(), post=len(inputs) == 3)


@pytest.mark.parametrize("path", ["strided", "residual", "post_residual"])
def test_cuda_graph_capture_and_replay_match_eager(path: str, guard: Patcher) -> None:
    qkv = torch.randn(64, 6144, device=CUDA, dtype=torch.bfloat16)  # decode-sized static buffers
    q = qkv[:, :4096].view(64, 32, 128)
    res = torch.randn(64, 32, 128, device=CUDA, dtype=torch.bfloat16)
    post = torch.randn(64, 32, 128, device=CUDA, dtype=torch.bfloat16)
    m = make(128)
    inputs = {"strided": [q], "residual": [q, res], "post_residual": [q, res, post]}[path]
    fill = {"strided": [qkv], "residual": [qkv, res], "post_residual": [qkv, res, post]}[path]
    _graph_replay(inputs, fill, lambda: m(*inputs))


class QNormBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = make(128)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        return self.norm(qkv[:, :4096].view(qkv.shape[0], 32, 128))


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_keeps_the_guard_in_the_graph(backend: str, guard: Patcher) -> None:
    torch._dynamo.reset()
    block = QNormBlock()
    graphs: list[str] = []

    def recording(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(gm.code)
        return gm.forward if backend == "eager" else torch._inductor.compile(gm, example_inputs)

    compiled = torch.compile(block, backend=recording, fullgraph=True)
    qkv = torch.randn(256, 6144, device=CUDA, dtype=torch.bfloat16)
    got = compiled(qkv)
    close(got, block.norm.forward_native(qkv[:, :4096].view(256, 32, 128)))
    assert graphs and any("contiguous" in g or "clone" in g for g in graphs), graphs
    assert any("aiter_double.rmsnorm2d_fwd" in g for g in graphs), graphs
