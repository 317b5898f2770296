"""The layer-boundary fused RMSNorm + fp8 per-token quant, on every pinned release that has it.

``_fused_rmsnorm_fp8_per_token_quant`` has no zero-row, layout or weight check of its own in any
release; sglang's callers skip empty batches before it (so no released path hands it 0 rows:
the guard's check there is defence in depth).  Runs in a fresh interpreter (tests/support/quant.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python, sglang_version, version_tuple

SCRIPT = Path(__file__).resolve().parent / "support" / "quant.py"
pytestmark = pytest.mark.skipif(
    version_tuple(sglang_version()) < (0, 5, 11), reason="n/a: this sglang has no fused rmsnorm fp8 quant"
)


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    proc = run_python(f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["guarded"] and out["stubbed_norm_kernels"] == []
    return out


@pytest.mark.parametrize("case", ["safe", "safe_residual", "transposed", "fp32_weight", "fp32_weight_transposed"])
def test_guarded_is_the_release_on_canonical_inputs(case: str, results: dict[str, Any]) -> None:
    got = results[case]
    assert got["guarded"]["outcome"] == "ok", got
    assert got["guarded"] == got["release_on_canonical"]


@pytest.mark.parametrize("case", ["transposed", "fp32_weight", "fp32_weight_transposed"])
def test_unguarded_release_misreads(case: str, results: dict[str, Any]) -> None:
    got = results[case]
    assert got["unguarded"] != got["release_on_canonical"], got


def test_zero_rows_fail_unguarded_and_give_the_functions_empty_results_guarded(results: dict[str, Any]) -> None:
    assert results["zero_rows"]["unguarded"]["outcome"] == "InvalidConfiguration"
    assert results["zero_rows"]["guarded"] == {
        "outcome": "ok",
        "result": [[[0, 64], "torch.float8_e4m3fnuz", 0.0], [[0, 1], "torch.float32", 0.0]],
    }
    assert results["zero_rows_residual"]["unguarded"]["outcome"] == "InvalidConfiguration"
    guarded = results["zero_rows_residual"]["guarded"]["result"]
    assert guarded[0] == [[[0, 64], "torch.float8_e4m3fnuz", 0.0], [[0, 1], "torch.float32", 0.0]]
    assert guarded[1] == [[0, 64], "torch.bfloat16", 0.0]


def test_short_weight_is_a_clear_error_not_a_read_past_it(results: dict[str, Any]) -> None:
    assert results["short_weight"]["unguarded"]["outcome"] in ("ok", "MemoryAccessFault")
    assert results["short_weight"]["guarded"]["outcome"] == "ValueError"
