"""doctor's verdict per way of starting sglang against what the started processes really do.

Each way is started for real (``python -m sglang.launch_server``, ``sglang.Engine(...)``,
``python -m sglang.bench_one_batch`` / ``sglang.benchmark.one_batch``) on the CPU with a tiny
dummy-weight model, with ``tests/support/ways_site/sitecustomize.py`` injected into every Python
process: where a process is about to build the model (``Scheduler.__init__`` in the scheduler
children, ``ModelRunner.__init__`` in the benchmark) it reports whether the guard is installed
there and whether sglang's ``load_plugins()`` ran, and stops.  The modules a CPU machine lacks
(sgl_kernel, uvloop, fastapi, ...) are stubbed there; nothing that loads plugins or the guard is.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiter_norm_guard.bootstrap.startup import startup_file
from conftest import REPO

SITE = REPO / "tests" / "support" / "ways_site"
STUB = "setproctitle,sgl_kernel,uvloop,uvicorn,fastapi,vllm,jsonschema,soundfile,xgrammar"
#: packages the 0.5.23 overlay lacks and its import of the server needs, borrowed from 0.5.11's
BORROW = ("openai", "jiter", "httpx", "httpcore", "sniffio", "partial_json_parser")
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 1,
    "vocab_size": 256,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "torch_dtype": "bfloat16",
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
}
WAYS = {
    "0.5.10": ("launch_server", "bench_one_batch"),
    "0.5.11": ("launch_server", "Engine", "bench_one_batch"),
    "0.5.23": ("launch_server", "benchmark.one_batch"),
}
CASES = [(v, w, "plugin") for v, ways in WAYS.items() for w in ways]
CASES += [("0.5.11", "launch_server", "off"), ("0.5.11", "bench_one_batch", "off")]
CASES += [
    (v, w, "on")
    for v, w in (("0.5.10", "launch_server"), ("0.5.11", "bench_one_batch"), ("0.5.23", "benchmark.one_batch"))
]


def _free_port() -> int:
    """A free port below 50000: sglang derives others from it (0.5.11: the gRPC port, +10000)."""
    for _ in range(100):
        port = random.randrange(20000, 50000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _command(way: str, model: Path) -> list[str]:
    base = ["--model-path", str(model), "--load-format", "dummy", "--device", "cpu"]
    if way == "launch_server":
        return ["-m", "sglang.launch_server", *base, "--port", str(_free_port()), "--skip-tokenizer-init"]
    if way == "Engine":
        return [
            "-c",
            f"import sglang; sglang.Engine(model_path={str(model)!r}, load_format='dummy', device='cpu', "
            f"skip_tokenizer_init=True, port={_free_port()})",
        ]
    module = "sglang.bench_one_batch" if way == "bench_one_batch" else "sglang.benchmark.one_batch"
    return ["-m", module, *base, "--batch-size", "1", "--input-len", "4", "--output-len", "2"]


def _env(release: str, mode: str, tmp: Path) -> dict[str, str]:
    overlay = REPO / ".envs" / f"sglang-{release}"
    if not (overlay / "sglang").is_dir():
        pytest.skip(f"the sglang {release} overlay is not built (scripts/setup.sh)")
    paths = [str(SITE), str(overlay)]
    if release == "0.5.23":
        borrowed = tmp / "borrowed"
        borrowed.mkdir()
        for name in BORROW:
            src = REPO / ".envs" / "sglang-0.5.11" / name
            if not src.exists():
                pytest.skip(f"cannot borrow {name} from the sglang 0.5.11 overlay")
            (borrowed / name).symlink_to(src)
        paths.append(str(borrowed))
    if startup_file() is None:  # a source checkout: make the package and its sglang plugin visible
        dist = tmp / "site" / "aiter_norm_guard_probe-0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aiter-norm-guard-probe\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text(
            "[sglang.srt.plugins]\naiter_norm_guard = _aiter_norm_guard_startup:sglang_plugin\n"
        )
        paths += [str(tmp / "site"), str(REPO)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITER_NORM_GUARD", "SGLANG_", "WAYS_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        WAYS_STUB=STUB,
        WAYS_STUB_MODELS="xgrammar",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if mode != "plugin":
        env["AITER_NORM_GUARD"] = "1" if mode == "on" else "0"
    return env


def _doctor(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-P", "-W", "ignore", "-m", "aiter_norm_guard", "doctor", "--json", "--as-rocm"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize(("release", "way", "mode"), CASES)
def test_doctor_matches_the_started_way(release: str, way: str, mode: str, tmp_path: Path) -> None:
    if mode == "on" and startup_file() is None:
        pytest.skip("AITER_NORM_GUARD=1 reaches processes through the start-up file: install the wheel")
    env = _env(release, mode, tmp_path)
    code, d = _doctor(env)
    row = next(w for w in d["ways"] if w["name"] == way)
    plugin_way = release != "0.5.10" and way in ("launch_server", "Engine")
    assert row["protected"] is {"on": True, "off": False, "plugin": plugin_way}[mode], row
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(CONFIG))
    reports = tmp_path / "reports"
    reports.mkdir()
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", *_command(way, model)],
        capture_output=True,
        text=True,
        env={**env, "WAYS_REPORT": str(reports)},
        cwd=tmp_path,
        timeout=480,
    )
    seen = [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))]
    assert seen, f"no process reached the model build:\n{proc.stderr[-3000:]}"
    for r in seen:  # the model processes: guarded exactly where doctor says so
        assert r["guard_installed"] is row["protected"], (row, r)
        if d["links"]["plugin"]["loader"]["present"]:
            assert r["load_plugins_ran"] is row["loads_plugins"], (row, r)
        else:
            assert r["load_plugins_ran"] is False
        if mode == "plugin" and plugin_way and way == "launch_server" and startup_file() is not None:
            # the launcher's own plugin switched AITER_NORM_GUARD on for its children, which read it at start:
            # the route doctor counts for the EPD encoder's ranks and the diffusion workers under `sglang serve`
            assert r["sources"][0] == "env-bootstrap", r
    assert (code == 0) is all(w["protected"] for w in d["ways"]) and (code == 0) is d["ok"]
    if not row["protected"]:
        assert code == 1 and (way in d["verdict"] or d["verdict"].startswith("NOT protected:"))
