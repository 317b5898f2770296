"""Interventions: counted per process and (entry, reason), logged once, exported to Prometheus
in multiprocess mode (as sglang's ``--enable-metrics`` sets it up) and never a failure."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import interventions_child
import pytest
import torch

import aiter_norm_guard
from aiter_norm_guard.guard import interventions
from aiter_norm_guard.guard.guard import Guard
from aiter_norm_guard.kernels.form import Kernel, Rows, Vector
from aiter_norm_guard.targets import Feed, Native, Target
from conftest import run_python


@pytest.fixture(autouse=True)
def fresh() -> None:
    interventions.reset()


def test_counts_per_entry_and_reason_in_this_process() -> None:
    interventions.record("RMSNorm.forward_aiter", "zero rows")
    interventions.record("RMSNorm.forward_aiter", "zero rows")
    interventions.record("RMSNorm.forward_aiter", "layout copy")
    interventions.record("LayerNorm.forward_hip", "zero rows")
    interventions.record("RMSNorm.forward_aiter", "zero rows", "captured")
    assert interventions.snapshot() == [
        {"entry": "LayerNorm.forward_hip", "reason": "zero rows", "count": 1, "mode": "eager"},
        {"entry": "RMSNorm.forward_aiter", "reason": "layout copy", "count": 1, "mode": "eager"},
        {"entry": "RMSNorm.forward_aiter", "reason": "zero rows", "count": 1, "mode": "captured"},
        {"entry": "RMSNorm.forward_aiter", "reason": "zero rows", "count": 2, "mode": "eager"},
    ]
    assert aiter_norm_guard.status()["interventions"] == interventions.snapshot()


def test_logged_once_per_entry_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aiter_norm_guard"):
        for reason in ("view", "view", "weight dtype", "view"):
            interventions.record("Probe.log_once", reason)
    lines = [r.getMessage() for r in caplog.records if "Probe.log_once" in r.getMessage()]
    assert lines == [
        "aiter_norm_guard: Probe.log_once: view (first time in this process, mode eager; "
        "status()['interventions'] counts them)",
        "aiter_norm_guard: Probe.log_once: weight dtype (first time in this process, mode eager; "
        "status()['interventions'] counts them)",
    ]


def test_never_raises() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    interventions.record(Unprintable(), "x")  # type: ignore[arg-type]
    interventions.record("E", Unprintable())  # type: ignore[arg-type]
    assert interventions.snapshot() == []


def test_threads_lose_no_count() -> None:
    def work() -> None:
        for _ in range(2000):
            interventions.record("RMSNorm.forward_aiter", "host tensor")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert interventions.snapshot() == [
        {"entry": "RMSNorm.forward_aiter", "reason": "host tensor", "count": 16000, "mode": "eager"}
    ]


def _spawn(jobs: list[tuple[int, str]], env: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:  # spawn children take the environment as it is at start()
        procs = [ctx.Process(target=interventions_child.record_and_report, args=(n, e, queue)) for n, e in jobs]
        for p in procs:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def test_each_spawned_process_counts_its_own() -> None:
    interventions.record("Parent.entry", "zero rows")
    snaps = _spawn([(3, "Child.a"), (5, "Child.b")])
    got = sorted((s[1]["entry"], s[1]["count"]) for s in snaps)  # each: its layout copy, then its zero rows
    assert got == [("Child.a", 3), ("Child.b", 5)]
    assert all(len(s) == 2 and s[0]["count"] == 1 for s in snaps)  # no parent count, no sibling's
    assert interventions.snapshot() == [{"entry": "Parent.entry", "reason": "zero rows", "count": 1, "mode": "eager"}]


def test_prometheus_multiprocess_collector_sums_the_processes(tmp_path: Path) -> None:
    """As sglang's /metrics: a MultiProcessCollector over PROMETHEUS_MULTIPROC_DIR, children spawned."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    _spawn(
        [(2, "RMSNorm.forward_aiter"), (3, "RMSNorm.forward_aiter"), (4, "LayerNorm.forward_hip")],
        {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aiter_norm_guard_interventions_total{")
    }
    name = "aiter_norm_guard_interventions_total"
    assert samples == {
        f'{name}{{entry="LayerNorm.forward_hip",mode="eager",reason="layout copy"}}': 1.0,
        f'{name}{{entry="LayerNorm.forward_hip",mode="eager",reason="zero rows"}}': 4.0,
        f'{name}{{entry="RMSNorm.forward_aiter",mode="compiled",reason="zero rows"}}': 2.0,
        f'{name}{{entry="RMSNorm.forward_aiter",mode="eager",reason="layout copy"}}': 2.0,
        f'{name}{{entry="RMSNorm.forward_aiter",mode="eager",reason="zero rows"}}': 5.0,
    }


COUNT_THEN_SAY = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
{before}
from aiter_norm_guard.guard import interventions
interventions.record("RMSNorm.forward_aiter", "zero rows")
interventions.record("RMSNorm.forward_aiter", "zero rows")
print(interventions.snapshot()[0]["count"], "prometheus_client" in sys.modules)
"""


def test_no_multiproc_dir_imports_no_prometheus_client() -> None:
    proc = run_python(COUNT_THEN_SAY.format(before=""))
    assert proc.returncode == 0 and proc.stdout.split() == ["2", "False"], proc.stderr
    assert "not exported" not in proc.stderr


@pytest.mark.parametrize("how", ["missing", "imported too early"])
def test_prometheus_trouble_is_one_line_and_counting_goes_on(how: str, tmp_path: Path) -> None:
    if how == "missing":
        shim = tmp_path / "shim" / "prometheus_client"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('prometheus_client hidden by a test shim')\n")
        before = f"sys.path.insert(0, {str(shim.parent)!r})"
        env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    else:
        pytest.importorskip("prometheus_client")
        before = f"import os, prometheus_client; os.environ['PROMETHEUS_MULTIPROC_DIR'] = {str(tmp_path)!r}"
        env = {}
    proc = run_python(COUNT_THEN_SAY.format(before=before), env=env)
    assert proc.returncode == 0 and proc.stdout.split()[0] == "2", proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "not exported to Prometheus" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), proc.stderr
    assert ("hidden by a test shim" if how == "missing" else "multiprocess mode") in warnings[0]


FORK_LOG = """
import logging, os, sys
logging.basicConfig(level=logging.INFO, format="LOG %(process)d %(message)s", stream=sys.stdout)
from aiter_norm_guard.guard import interventions
interventions.record("RMSNorm.forward_aiter", "zero rows")
pid = os.fork()
if pid == 0:
    interventions.record("RMSNorm.forward_aiter", "zero rows")
    print("child", interventions.snapshot()[0]["count"], flush=True); os._exit(0)
os.waitpid(pid, 0)
interventions.record("RMSNorm.forward_aiter", "zero rows")
"""


def test_a_forked_child_logs_its_own_first_intervention() -> None:
    proc = run_python(FORK_LOG)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    firsts = [ln.split()[1] for ln in lines if "RMSNorm.forward_aiter: zero rows (first time" in ln]
    assert len(firsts) == 2 and firsts[0] != firsts[1]  # the parent's first and the child's; no second
    assert "child 1" in lines


# -- torch.compile: the compiled graph counts each call the guard changed (mode "compiled") ---------------------
KERNEL = Kernel("test kernel", "tests", rows=(("input", Rows()),), vectors=(("weight", Vector()),), device=False)
ENTRY = "Probe.forward_aiter"


@torch.library.custom_op("aiter_norm_guard_test_iv::rows", mutates_args=())
def _rows_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    assert x.dim() == 2 and x.is_contiguous() and x.shape[0] > 0  # the kernel's contract, as an opaque op
    return x * w


@_rows_op.register_fake
def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class ProbeNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(8))

    def forward_native(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def _guarded() -> Any:
    def forward_aiter(self: Any, x: torch.Tensor) -> torch.Tensor:
        return _rows_op(x, self.weight)

    target = Target(ENTRY, "m", ENTRY, Feed(), (KERNEL,), Native("forward_native", ("x",)))
    return Guard(forward_aiter, target).build()


UNSAFE = {  # input: what the guard does to it (every call changed)
    "rank 3": lambda: torch.randn(2, 4, 8),
    "transposed": lambda: torch.randn(8, 6).t(),
    "zero rows": lambda: torch.randn(0, 8),
}


def _by_mode() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in interventions.snapshot():
        assert set(c) == {"entry", "reason", "count", "mode"}
        out.setdefault(c["mode"], {})[c["reason"]] = c["count"]
    return out


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_fullgraph_counts_each_call_the_guard_changed(backend: str) -> None:
    """The issue: eager counted 6, the same calls compiled counted 0.  Now the compiled graph keeps the
    count (a side-effecting op on the route the guard chose) and counts per call, ``mode`` compiled."""
    fn, m = _guarded(), ProbeNorm()
    calls = 4
    with torch.no_grad():
        for make in UNSAFE.values():
            for _ in range(calls):
                x = make()
                torch.testing.assert_close(fn(m, x), m.forward_native(x))
        eager = _by_mode()
        interventions.reset()
        torch._dynamo.reset()
        graphs: list[str] = []

        def keep(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
            graphs.append(gm.code)
            return torch._dynamo.backends.registry.lookup_backend(backend)(gm, example_inputs)

        compiled = torch.compile(lambda x: fn(m, x), backend=keep, fullgraph=True, dynamic=False)
        for make in UNSAFE.values():
            for _ in range(calls):
                x = make()
                torch.testing.assert_close(compiled(x), m.forward_native(x))
    assert set(eager) == {"eager"} and sum(eager["eager"].values()) == calls * len(UNSAFE), eager
    got = _by_mode()
    assert got == {"compiled": eager["eager"]}, (got, eager)  # the same reasons, the same counts, per call
    assert len(graphs) == len(UNSAFE) and all("intervened" in g for g in graphs), graphs


def test_torch_compile_of_safe_calls_keeps_no_count_op() -> None:
    """The safe route's graph has nothing of the counting: no cost added where the guard does nothing."""
    fn, m = _guarded(), ProbeNorm()
    torch._dynamo.reset()
    graphs: list[str] = []

    def keep(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        graphs.append(gm.code)
        return gm.forward

    compiled = torch.compile(lambda x: fn(m, x), backend=keep, fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            compiled(torch.randn(4, 8))
    assert graphs and not any("intervened" in g for g in graphs), graphs
    assert interventions.snapshot() == []


def test_a_capturing_stream_counts_captured_eager_and_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a CUDA graph captures (eager, or a compiled graph's op at capture), the count is ``captured``:
    one per capture, as replays run no Python.  (The capture itself runs on the GPU: tests/gpu.)"""
    assert interventions._eager_mode() == "eager"
    if not torch.cuda.is_available():
        assert not torch.cuda.is_initialized()  # asking never initialises CUDA
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    interventions.record("Probe.entry", "view")
    interventions.traced_op()("Probe.entry", "view")  # the compiled graph's op, run at capture
    assert interventions.snapshot() == [{"entry": "Probe.entry", "reason": "view", "count": 2, "mode": "captured"}]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    interventions.traced_op()("Probe.entry", "view")
    assert [(c["mode"], c["count"]) for c in interventions.snapshot()] == [("captured", 2), ("compiled", 1)]
