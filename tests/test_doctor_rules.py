"""doctor's one exit-code rule, every link it checks (wrapt, start-up file, switch, plugin entry
point, SGLANG_PLUGINS) and its verdict per way of starting sglang; selftest when the guard cannot install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_cli import as_json, cli, fake_ray

from aiter_norm_guard.bootstrap.startup import startup_file
from conftest import REPO

EP = "[sglang.srt.plugins]\naiter_norm_guard = _aiter_norm_guard_startup:sglang_plugin\n"


def plugin_site(tmp: Path) -> str:
    """A directory whose dist-info makes the guard's sglang plugin visible, as the wheel does."""
    dist = tmp / "ep" / "aiter_norm_guard_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aiter-norm-guard-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(EP)
    return str(tmp / "ep")


def overlay(release: str, *extra: str) -> str:
    return os.pathsep.join([str(REPO / ".envs" / f"sglang-{release}"), *extra])


def no_wrapt(tmp: Path) -> str:
    shim = tmp / "nowrapt" / "wrapt"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('wrapt hidden by a test shim')\n")
    return str(shim.parent)


@pytest.mark.parametrize("ray", [True, False])
@pytest.mark.parametrize(("release", "bad"), [("0.5.11", "bench_one_batch"), ("0.5.23", "benchmark.one_batch")])
def test_plugin_only_protection_is_qualified_per_way(release: str, bad: str, ray: bool, tmp_path: Path) -> None:
    """``ray``: whether ray is importable by the interpreter doctor judges (its own, with this PYTHONPATH)."""
    extra = [fake_ray(tmp_path)] if ray else []
    proc = cli("doctor", "--json", release=None, PYTHONPATH=overlay(release, plugin_site(tmp_path), *extra))
    d = as_json(proc)
    ways = {w["name"]: w for w in d["ways"]}
    first = f"NOT protected for: {bad} (its model processes do not load sglang's plugins)"
    if ray:  # the Ray rule: its actors load no plugins and need not inherit the launching process's environment
        first += (
            "; use_ray (its model processes load no plugins and need not inherit the launching process's "
            "environment: protected only if the Ray cluster's workers run with AITER_NORM_GUARD=1 (e.g. "
            "`AITER_NORM_GUARD=1 ray start ...`))"
        )
        assert ways["use_ray"]["protected"] is False and "runs_here" not in ways["use_ray"]
    else:  # --use-ray cannot start in this interpreter: not held against it, and said so
        assert ways["use_ray"]["protected"] is True and ways["use_ray"]["runs_here"] is False
        assert (
            d["verdict"].endswith("; use_ray not judged: " + ways["use_ray"]["route"])
            and "use_ray" not in d["verdict"].split("; use_ray not judged")[0]
        )
    assert d["links"]["importable"] == {"ray": ray}
    assert proc.returncode == 1 and d["ok"] is False and d["verdict"].startswith(first), d["verdict"]
    head = d["headline"]  # the ways by name, or counted where their names would not fit on one short line
    assert head.startswith("NOT protected for ") and "; fix: " in head and len(head) < 120, head
    assert head.startswith(f"NOT protected for {bad}") or " ways of starting sglang; fix" in head, head
    assert "protected for: launch_server, serve, Engine" in d["verdict"]
    assert (
        d["verdict"]
        .split("; use_ray not judged")[0]
        .endswith(
            "set AITER_NORM_GUARD=1 for sglang (or start it with `aiter-norm-guard run -- ...`)"
            + ("" if startup_file() else ", with this package installed from its wheel (the start-up file)")
        )
    )
    for good in ("launch_server", "Engine", "compile_deep_gemm"):  # the schedulers load plugins themselves
        assert ways[good]["protected"] is True and ways[good]["route"].startswith("sglang's plugin loading")
    assert ways[bad]["protected"] is False and ways[bad]["loads_plugins"] is False
    # the EPD encoder's ranks >= 1 load none: the launcher's plugin reaches them through the start-up file only
    enc = ways["encoder_only"]
    assert enc["loads_plugins"] is False and enc["launcher"]["groups"] == ["sglang.srt.plugins"]
    assert enc["protected"] is (startup_file() is not None)
    if release == "0.5.23":  # the diffusion runtime: its workers load their own group, where the wheel registers too
        gen = ways["generate (diffusion model)"]
        assert gen["exposed"] == ["multimodal_gen RMSNorm.forward_aiter"]
        assert gen["protected"] is (startup_file() is not None)  # the wheel is installed, or only the test's site
        if not gen["protected"]:
            assert gen["reason"] == "the sglang.multimodal_gen.plugins entry point 'aiter_norm_guard' is not installed"
        assert ways["serve (diffusion model)"]["protected"] is (startup_file() is not None)
    table = cli("doctor", release=None, PYTHONPATH=overlay(release, plugin_site(tmp_path / "t"), *extra)).stdout
    assert f"way: {bad}" in table and "NOT protected: its model processes do not load" in table
    use_ray = next(ln for ln in table.splitlines() if ln.startswith("way: use_ray"))
    assert (
        ray
        or use_ray.split(None, 2)[2]
        == "not judged: cannot start in this interpreter: ray is not importable "
        "here; run doctor with a Python that has ray to judge it"
    ), use_ray


@pytest.mark.parametrize("ray", [True, False])
def test_the_ray_rule_counts_only_where_ray_can_start(ray: bool, tmp_path: Path) -> None:
    """A deployment's ways, by sglang's plugin loading: --use-ray is held against the verdict only where this
    interpreter can import ray (its actors load no plugins and need not inherit the environment)."""
    extra = [fake_ray(tmp_path)] if ray else []
    env = {"PYTHONPATH": overlay("0.5.23", plugin_site(tmp_path), *extra)}
    proc = cli("doctor", "--json", "--ways", "launch_server,Engine,use_ray", release=None, **env)
    d = as_json(proc)
    assert proc.returncode == (1 if ray else 0) and d["ok"] is not ray, d["verdict"]
    if ray:
        assert d["verdict"].startswith("NOT protected for: use_ray (its model processes load no plugins")
        assert d["headline"] == "NOT protected for use_ray; fix: " + (
            "set AITER_NORM_GUARD=1 (or use `aiter-norm-guard run --`)"
            if startup_file()
            else "install the wheel, then set AITER_NORM_GUARD=1"
        )
    else:
        assert (
            d["verdict"].startswith("protected: ")
            and "use_ray not judged: cannot start in this interpreter" in d["verdict"]
        )
        assert d["headline"] == "protected: every way of starting sglang here runs the guard (sglang's plugin loading)"
    only_ray = cli("doctor", "--json", "--ways", "use_ray", release=None, **env)
    assert only_ray.returncode == (1 if ray else 0), as_json(only_ray)["verdict"]
    assert ray or as_json(only_ray)["headline"] == "nothing to judge: use_ray cannot start in this interpreter"


@pytest.mark.skipif(startup_file() is None, reason="start-up file not installed (install the wheel)")
def test_the_switch_and_the_start_up_file_protect_every_way_whatever_plugins_do(tmp_path: Path) -> None:
    """Every way whose model processes inherit the environment; Ray's workers need not (see the next test)."""
    env = {"AITER_NORM_GUARD": "1", "SGLANG_PLUGINS": "someone_else"}
    proc = cli("doctor", "--json", release=None, PYTHONPATH=overlay("0.5.23", fake_ray(tmp_path)), **env)
    ways = {w["name"]: w for w in as_json(proc)["ways"]}
    assert proc.returncode == 1 and all(w["protected"] for n, w in ways.items() if n != "use_ray")
    assert ways["use_ray"]["protected"] is None
    no_ray = cli("doctor", "--json", release="0.5.23", **env)  # the host: ray not installed, all else right
    assert no_ray.returncode == 0 and as_json(no_ray)["ok"] is True, as_json(no_ray)["verdict"]
    mine = cli("doctor", "--json", "--ways", "launch_server,Engine", release="0.5.23", AITER_NORM_GUARD="1")
    assert mine.returncode == 0 and as_json(mine)["verdict"].startswith("protected")


def test_the_switch_protects_ray_workers_only_if_the_cluster_has_it() -> None:
    """sglang passes no environment to its Ray actors: AITER_NORM_GUARD=1 here says nothing about the cluster's
    workers, so use_ray is 'cannot tell' (exit 1 by the one rule) unless sglang's plugin loading reaches them."""
    from aiter_norm_guard.cli import protection
    from aiter_norm_guard.targets import entrypoints

    root = REPO / ".envs" / "sglang-0.5.23" / "sglang"
    if not root.is_dir():
        pytest.skip("sglang 0.5.23 overlay not built")
    ln = protection.links(root)
    ln.update(
        AITER_NORM_GUARD="1", startup_file="/site/aiter_norm_guard.pth", startup_module=True, importable={"ray": True}
    )
    ln["wrapt"] = {"importable": True, "version": "2"}
    ways = {w["name"]: w for w in protection.per_way(entrypoints.scan(root), ln, {"srt": ["RMSNorm.forward_aiter"]})}
    assert ways["launch_server"]["protected"] is True
    ray = ways["use_ray"]
    assert ray["protected"] is None and ray["reason"] == protection.NOT_INHERITED
    assert (
        "protected only if the Ray cluster's workers run with AITER_NORM_GUARD=1 (e.g. `AITER_NORM_GUARD=1 "
        "ray start ...`)" in ray["reason"]
    )
    verdict, ok, head = protection.summary(["RMSNorm.forward_aiter"], list(ways.values()), ln)
    assert not ok and verdict.startswith("cannot tell for: use_ray (cannot tell whether Ray's workers get")
    assert "protected for: launch_server" in verdict and verdict.endswith("--ways judges only the ways you use")
    assert head == "cannot tell for use_ray: start Ray's workers with AITER_NORM_GUARD=1"
    verdict, ok, head = protection.summary(["RMSNorm.forward_aiter"], [ways["launch_server"], ways["Engine"]], ln)
    assert ok and verdict.startswith("protected") and head.startswith("protected: every way")
    # ray not importable by the judged interpreter: --use-ray cannot start there, and is not held against it
    ln["importable"] = {"ray": False}
    ways = {w["name"]: w for w in protection.per_way(entrypoints.scan(root), ln, {"srt": ["RMSNorm.forward_aiter"]})}
    assert ways["use_ray"]["protected"] is True and ways["use_ray"]["runs_here"] is False
    verdict, ok, head = protection.summary(["RMSNorm.forward_aiter"], list(ways.values()), ln)
    assert (
        ok
        and verdict.startswith("protected: RMSNorm.forward_aiter, for every way")
        and "use_ray not judged" in verdict
        and head.startswith("protected: every way of starting sglang here runs the guard")
    )


@pytest.mark.parametrize("switch", [None, "1"])
def test_wrapt_missing_is_not_protected_with_the_reason(switch: str | None, tmp_path: Path) -> None:
    env = {"PYTHONPATH": no_wrapt(tmp_path) + os.pathsep + overlay("0.5.11", plugin_site(tmp_path))}
    if switch:
        env["AITER_NORM_GUARD"] = switch
    proc = cli("doctor", "--json", release=None, **env)
    d = as_json(proc)
    assert proc.returncode == 1 and d["links"]["wrapt"]["importable"] is False
    assert d["verdict"].startswith("NOT protected: wrapt is not importable here (ImportError: wrapt hidden")
    assert "pip install 'wrapt>=1.14'" in d["verdict"]
    assert all(w["protected"] is False and "wrapt" in w["reason"] for w in d["ways"] if w["exposed"])
    table = cli("doctor", release=None, **env).stdout
    assert "NOT importable: ImportError: wrapt hidden by a test shim" in table


def test_selftest_reports_a_guard_that_cannot_install(tmp_path: Path) -> None:
    env = {"PYTHONPATH": no_wrapt(tmp_path) + os.pathsep + overlay("0.5.10"), "AITER_NORM_GUARD": "1"}
    proc = cli("selftest", "--json", "--tokens", "16", release=None, **env)
    report = as_json(proc)
    assert proc.returncode == 1 and report["passed"] is False and "not_applicable" not in report
    assert report["error"].startswith("the guard cannot install in this interpreter: wrapt is not importable")
    table = cli("selftest", "--tokens", "16", release=None, **env)
    assert table.returncode == 1 and "nothing to guard" not in table.stdout and "error: the guard" in table.stdout


def _fake_sglang(tmp: Path, scheduler: str, ways: tuple[str, ...] = ("launch_server.py",)) -> str:
    """sglang 0.5.11's layernorm (exposed) and plugin loader, with a scheduler of our own."""
    src, site = REPO / ".envs" / "sglang-0.5.11", tmp / "fake"
    if not (src / "sglang").is_dir():
        pytest.skip("the sglang 0.5.11 overlay is not built")
    shutil.copytree(src / "sglang-0.5.11.dist-info", site / "sglang-0.5.11.dist-info")
    for rel in ("srt/layers/layernorm.py", "srt/plugins/__init__.py"):
        (site / "sglang" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "sglang" / rel, site / "sglang" / rel)
    (site / "sglang" / "__init__.py").write_text("")
    (site / "sglang" / "srt" / "managers").mkdir(parents=True)
    (site / "sglang" / "srt" / "managers" / "scheduler.py").write_text(scheduler)
    for rel in ways:
        (site / "sglang" / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / "sglang" / rel).write_text("")
    return os.pathsep.join([str(site), plugin_site(tmp)])


CALLS = "from sglang.srt.plugins import load_plugins\n\ndef run_scheduler_process():\n    load_plugins()\n"


@pytest.mark.parametrize(
    ("scheduler", "code", "verdict"),
    [
        (
            CALLS,
            0,
            "protected: RMSNorm.forward_aiter, GemmaRMSNorm.forward_hip, LayerNorm.forward_hip, for every "
            "way of starting sglang that runs them (sglang's plugin loading)",
        ),
        (
            "def run_scheduler_process():\n    pass\n",
            1,
            "NOT protected: its model processes do not load sglang's plugins, for every way",
        ),
        (
            "def renamed():\n    pass\n",
            1,
            "cannot tell for: launch_server, Engine (cannot tell whether its model processes load plugins: not found)",
        ),
    ],
)
def test_exit_code_follows_the_ways(scheduler: str, code: int, verdict: str, tmp_path: Path) -> None:
    path = _fake_sglang(tmp_path, scheduler, ("launch_server.py", "srt/entrypoints/engine.py"))
    d: dict[str, Any] = as_json(proc := cli("doctor", "--json", release=None, PYTHONPATH=path))
    assert proc.returncode == code and d["ok"] is (code == 0) and d["verdict"].startswith(verdict), d["verdict"]
    assert [w["name"] for w in d["ways"]] == ["launch_server", "Engine"]


def test_doctor_says_how_to_read_the_interventions() -> None:
    d = as_json(cli("doctor", "--json"))
    assert "status()['interventions']" in d["interventions"]["in_process"]
    assert d["interventions"]["prometheus"].startswith("aiter_norm_guard_interventions_total{entry,reason,mode}")
    assert "aiter_norm_guard_interventions_total" in cli("doctor").stdout


@pytest.mark.parametrize("switch", [None, "0"])
def test_no_way_found_is_cannot_tell_unless_the_guard_is_off(switch: str | None, tmp_path: Path) -> None:
    path = _fake_sglang(tmp_path, CALLS, ways=())
    env = {"PYTHONPATH": path, **({"AITER_NORM_GUARD": switch} if switch else {})}
    d = as_json(proc := cli("doctor", "--json", release=None, **env))
    assert proc.returncode == 1 and d["ways"] == []
    want = "NOT protected: AITER_NORM_GUARD=0 turns" if switch else "cannot tell: no way of starting sglang found"
    assert d["verdict"].startswith(want), d["verdict"]


def test_doctor_lists_the_call_sites_this_sglang_has_and_why_the_guard_leaves_some() -> None:
    from aiter_norm_guard.targets.callsites import CALL_SITES

    d = as_json(cli("doctor", "--json", release="0.5.23"))
    sites = {c["site"]: c for c in d["call_sites"]}
    assert list(sites) == [c.site for c in CALL_SITES]
    assert sites["RMSNorm.forward_aiter (and its x_pad path)"]["present"] is True
    left = [c for c in d["call_sites"] if c["present"] and c["status"] != "guarded"]
    assert left and all(c["why"] for c in left)
    table = cli("doctor", release="0.5.23").stdout
    assert all(f"  {c['site']}" in table for c in left)
    assert not any(c["present"] for c in as_json(cli("doctor", "--json", release=None))["call_sites"])
