"""Reading, from sglang's sources, whether each way of starting it loads plugins in its model processes.

Against the real releases (the overlays in ``.envs``; the wheels 0.5.10 - 0.5.23 agree, see
``targets/entrypoints.py``), and against small source trees for the edges.
"""

from __future__ import annotations

import re
import runpy
import subprocess
from pathlib import Path

import pytest

from aiter_norm_guard.targets import entrypoints
from conftest import REPO

#: the pinned releases: one per requirements/sglang-X.txt, oldest first (as scripts/releases.sh lists them)
RELEASES = tuple(
    sorted(
        (p.name[len("sglang-") : -len(".txt")] for p in (REPO / "requirements").glob("sglang-*.txt")),
        key=lambda v: [int(n) for n in re.findall(r"\d+", v)],
    )
)
PLUGIN_WAYS = {
    "launch_server",
    "serve",
    "Engine",
    "bench_offline_throughput",
    "benchmark.offline_throughput",
    "bench_one_batch_server",
    "benchmark.one_batch_server",
    "compile_deep_gemm",
}
NO_PLUGIN_WAYS = {"bench_one_batch", "benchmark.one_batch", "use_ray", "encoder_only"}
#: ways whose launching process loads sglang.srt.plugins before it starts the model processes
LAUNCHERS = {
    "launch_server",
    "serve",
    "Engine",
    "bench_offline_throughput",
    "benchmark.offline_throughput",
    "use_ray",
    "encoder_only",
    "serve (diffusion model)",
}
DIFFUSION_WAYS = {"serve (diffusion model)", "generate (diffusion model)", "multimodal_gen.launch_server"}


def test_the_release_list_is_the_requirements_files() -> None:
    listed = subprocess.run(
        ["bash", str(REPO / "scripts" / "releases.sh")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert tuple(listed) == RELEASES and RELEASES[:3] == ("0.4.6", "0.4.10", "0.5.10"), listed
    assert tuple(runpy.run_path(str(REPO / "scripts" / "matrix.py"))["PINNED"]) == RELEASES


def _root(release: str) -> Path:
    root = REPO / ".envs" / f"sglang-{release}" / "sglang"
    if not root.is_dir():
        pytest.skip(f"the sglang {release} overlay is not built (scripts/setup.sh)")
    return root


def _v(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_as_read_from_its_sources(release: str) -> None:
    root = _root(release)
    ways = {w["name"]: w for w in entrypoints.scan(root)}
    loader = entrypoints.plugin_system(root)
    has_plugins = _v(release) >= (0, 5, 11)
    assert loader["present"] is has_plugins
    if has_plugins:
        assert loader["group"] == "sglang.srt.plugins" and loader["reads_SGLANG_PLUGINS"]
    assert {w["loads_plugins"] for w in ways.values()} <= {True, False}  # never "cannot tell" on a release
    for name, way in ways.items():
        if name in DIFFUSION_WAYS:  # its workers load the diffusion runtime's own group, from 0.5.21
            assert way["runtime"] == "diffusion" and way["loads_plugins"] is (_v(release) >= (0, 5, 21)), name
            groups = {g for p in way["processes"] for g in p["groups"]}
            assert groups == ({"sglang.multimodal_gen.plugins"} if _v(release) >= (0, 5, 21) else set())
        else:
            assert name in PLUGIN_WAYS | NO_PLUGIN_WAYS and way["runtime"] == "srt"
            assert way["loads_plugins"] is (has_plugins and name in PLUGIN_WAYS), name
            assert {g for p in way["processes"] for g in p["groups"]} == (
                {"sglang.srt.plugins"} if has_plugins and name in PLUGIN_WAYS else set()
            )
        launcher = way["launcher"]["groups"]
        assert launcher == (["sglang.srt.plugins"] if has_plugins and name in LAUNCHERS else []), name
    assert ("bench_one_batch" in ways) is (_v(release) <= (0, 5, 20))  # top-level file removed in 0.5.21
    assert ("benchmark.one_batch" in ways) is (_v(release) >= (0, 5, 15))
    assert {"launch_server", "Engine"} <= set(ways)
    if has_plugins:  # the scheduler's first statement, before the model is built
        sched = ways["launch_server"]["processes"][0]["evidence"][0]
        assert sched["where"] == "srt/managers/scheduler.py:run_scheduler_process" and sched["lines"]


def test_the_shim_of_0_5_15_is_followed_to_the_implementation() -> None:
    ways = {w["name"]: w for w in entrypoints.scan(_root("0.5.16"))}
    where = [e["where"] for p in ways["bench_one_batch"]["processes"] for e in p["evidence"]]
    assert where == ["benchmark/one_batch.py:latency_test", "benchmark/one_batch.py:correctness_test"]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sglang"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


PLUGINS = 'GENERAL_PLUGINS_GROUP = "sglang.srt.plugins"\ndef load_plugins():\n    os.environ.get("SGLANG_PLUGINS")\n'
CALLS = "from sglang.srt.plugins import load_plugins\n\ndef run_scheduler_process():\n    load_plugins()\n"


def _way(root: Path, name: str) -> dict:
    return next(w for w in entrypoints.scan(root) if w["name"] == name)


def test_a_call_counts_only_where_it_runs_and_binds_sglangs_loader(tmp_path: Path) -> None:
    base = {"launch_server.py": "", "srt/plugins/__init__.py": PLUGINS}
    root = _tree(tmp_path / "a", {**base, "srt/managers/scheduler.py": CALLS})
    assert _way(root, "launch_server")["loads_plugins"] is True
    nested = (
        "from sglang.srt.plugins import load_plugins\n\ndef run_scheduler_process():\n"
        "    def later():\n        load_plugins()\n"
    )
    other = "from somewhere_else import load_plugins\n\ndef run_scheduler_process():\n    load_plugins()\n"
    guarded = (
        "from sglang.srt.plugins import load_plugins\n\nif True:\n    def run_scheduler_process():\n"
        "        x = 1\n        load_plugins()\n"
    )
    for i, (text, want) in enumerate(((nested, False), (other, False), (guarded, True))):
        root = _tree(tmp_path / str(i), {**base, "srt/managers/scheduler.py": text})
        assert _way(root, "launch_server")["loads_plugins"] is want, text


def test_a_model_runner_that_loads_plugins_covers_every_way(tmp_path: Path) -> None:
    runner = (
        "import sglang.srt.plugins\n\nclass ModelRunner:\n    def __init__(self):\n"
        "        sglang.srt.plugins.load_plugins()\n"
    )
    bench = "def latency_test():\n    pass\n\ndef correctness_test():\n    pass\n\ndef load_model():\n    pass\n"
    files = {
        "bench_one_batch.py": bench,
        "srt/model_executor/model_runner.py": runner,
        "srt/managers/scheduler.py": "def run_scheduler_process():\n    pass\n",
    }
    assert _way(_tree(tmp_path / "a", files), "bench_one_batch")["loads_plugins"] is False  # no loader to bind
    root = _tree(tmp_path / "b", {**files, "srt/plugins/__init__.py": PLUGINS})
    assert _way(root, "bench_one_batch")["loads_plugins"] is True
    assert _way(root, "bench_one_batch")["processes"][0]["groups"] == ["sglang.srt.plugins"]


def test_a_missing_or_unreadable_site_is_cannot_tell(tmp_path: Path) -> None:
    root = _tree(tmp_path / "a", {"launch_server.py": "", "srt/managers/scheduler.py": "def renamed():\n    pass\n"})
    way = _way(root, "launch_server")
    assert way["loads_plugins"] is None and way["processes"][0]["evidence"][0]["error"] == "not found"
    root = _tree(tmp_path / "b", {"launch_server.py": "", "srt/managers/scheduler.py": "def broken(:\n"})
    err = _way(root, "launch_server")["processes"][0]["evidence"][0]["error"]
    assert _way(root, "launch_server")["loads_plugins"] is None and "SyntaxError" in err


def test_ways_absent_from_a_release_are_not_listed_and_optional_processes_skipped(tmp_path: Path) -> None:
    enc = "def launch_encoder():\n    pass\n\nclass MMEncoder:\n    def __init__(self):\n        pass\n"
    root = _tree(tmp_path, {"srt/disaggregation/encode_server.py": enc})
    ways = entrypoints.scan(root)
    assert [w["name"] for w in ways] == ["encoder_only"]
    assert [p["role"] for p in ways[0]["processes"]] == ["encoder TP ranks >= 1"]  # no DP workers before 0.5.19
    assert ways[0]["loads_plugins"] is False


def test_every_site_names_a_file_of_the_table() -> None:
    for way in entrypoints.WAYS:
        assert way.files and way.processes and way.command
        for proc in way.processes:
            assert all(s.files and s.function for s in proc.sites)
