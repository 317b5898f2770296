"""sglang 0.5.10's real model code: the hazards real models hit, unguarded and guarded.

GLM-4 and Step-3.5 run a zero-token idle batch (``ForwardMode.IDLE``, as an idle
DP-attention rank does) through sglang's own ``Model.forward``: GLM-4's decoder layer calls
``input_layernorm`` (RMSNorm) with 0 rows, Step-3.5's ``post_attention_layernorm``
(GemmaRMSNorm) does.  Hunyuan's cross-layer attention layer hands ``query_layernorm`` a rank-3
``(tokens, heads, head_dim)`` tensor.  Each runs in a fresh interpreter (tests/support/models.py
says what is stubbed: nothing that is a norm), once with ``AITER_NORM_GUARD=0`` and once guarded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python, sglang_version

SCRIPT = Path(__file__).resolve().parent / "support" / "models.py"
pytestmark = pytest.mark.skipif(sglang_version() != "0.5.10", reason="n/a: the model cases are pinned to sglang 0.5.10")


def run_models(guard: str) -> dict[str, Any]:
    proc = run_python(
        f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')",
        env={"AITER_NORM_GUARD": guard},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {"unguarded": run_models("0"), "guarded": run_models("1")}


def test_nothing_that_is_a_norm_was_stubbed(results: dict[str, dict[str, Any]]) -> None:
    for run in results.values():
        assert run["stubbed_norm_kernels"] == [] and run["stub_calls_after_freeze"] == []
    assert results["unguarded"]["guarded"] == []
    assert results["guarded"]["guarded"] == [
        "GemmaRMSNorm.forward_hip",
        "GroupCoordinator.fused_allreduce_rmsnorm",
        "RMSNorm.forward_aiter",
    ]


@pytest.mark.parametrize(
    ("case", "unguarded"),
    [("glm4:0", "InvalidConfiguration"), ("step3p5:0", "InvalidConfiguration"), ("hunyuan_cla:5", "MemoryAccessFault")],
)
def test_hazard_fails_unguarded_and_matches_the_native_norms_guarded(
    case: str, unguarded: str, results: dict[str, dict[str, Any]]
) -> None:
    assert results["unguarded"][case]["outcome"] == unguarded, results["unguarded"][case]
    got = results["guarded"][case]
    assert got["outcome"] == "ok", got
    assert got["max_abs_diff_vs_native"] == 0.0


@pytest.mark.parametrize("case", ["glm4:5", "step3p5:5"])
def test_safe_batches_are_the_releases_own_results_bit_for_bit(case: str, results: dict[str, dict[str, Any]]) -> None:
    before, after = results["unguarded"][case], results["guarded"][case]
    assert before["outcome"] == after["outcome"] == "ok"
    assert after["shapes"] == before["shapes"] and after["digest"] == before["digest"]
