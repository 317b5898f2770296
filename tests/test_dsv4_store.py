"""DeepSeek-V4's two-pool fp8 store (aiter ``fused_qk_norm_rope_group_quant``) through sglang's own
``_fp8_2buff_store``, unguarded and guarded, behind the emulated ROCm (gfx950) whose double reads memory as
aiter HEAD's kernel does (tests/support/dsv4_store.py, in a fresh interpreter)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python, sglang_version

SUPPORT = Path(__file__).resolve().parent / "support"
STORE = "kernels/ops/attention/fused_qk_norm_rope_store.py"
ENTRY = "fused_qk_norm_rope_store.fused_qk_norm_rope_group_quant"


def _missing() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        return f"n/a: no sglang ({sglang_version()})"
    path = Path(next(iter(spec.submodule_search_locations))) / STORE
    if not path.exists() or "def _fp8_2buff_store(" not in path.read_text(encoding="utf-8"):
        return f"n/a: sglang {sglang_version()} has no {STORE} with _fp8_2buff_store"
    return None


@pytest.fixture(scope="module")
def store() -> dict[str, Any]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    code = f"import runpy; runpy.run_path({str(SUPPORT / 'dsv4_store.py')!r}, run_name='__main__')"
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["has_group_quant"] and out["stubbed_norm_kernels"] == []
    assert ENTRY in out["guarded_entries"]
    return out


def test_safe_call_reaches_the_kernel_once_untouched(store: dict[str, Any]) -> None:
    u, g = store["safe"]["unguarded"], store["safe"]["guarded"]
    assert u["outcome"] == g["outcome"] == "ok"
    assert g["kernels"] == ["fused_qk_norm_rope_group_quant"]
    assert g["own_k_weight"] == g["own_kv"] == [True]
    assert g["values"] == u["values"] and g["interventions"] == {}


def test_zero_tokens_writes_nothing_without_a_launch(store: dict[str, Any]) -> None:
    u, g = store["zero_tokens"]["unguarded"], store["zero_tokens"]["guarded"]
    assert u["outcome"] == "InvalidConfiguration"
    assert g["outcome"] == "ok" and g["kernels"] == []
    assert [shape for shape, _, _ in g["values"]] == [[0, 2, 512], [0, 1, 512], [0, 1, 64]]
    assert list(g["interventions"].values()) == [1]


def test_strided_k_weight_is_made_contiguous(store: dict[str, Any]) -> None:
    safe = store["safe"]["unguarded"]["values"]
    u, g = store["strided_k_weight"]["unguarded"], store["strided_k_weight"]["guarded"]
    assert u["outcome"] == "ok" and u["values"] != safe  # aiter reads every element from the pointer
    assert g["outcome"] == "ok" and g["values"] == safe
    assert g["kernels"] == ["fused_qk_norm_rope_group_quant"] and g["own_k_weight"] == [False]


@pytest.mark.parametrize(
    ("case", "unguarded", "named"),
    [("fp32_k_weight", "ok", "k_weight's dtype"), ("kv_rows_short", "MemoryAccessFault", "kv rows")],
)
def test_misread_raises_a_value_error_naming_input_and_line(
    store: dict[str, Any], case: str, unguarded: str, named: str
) -> None:
    u, g = store[case]["unguarded"], store[case]["guarded"]
    assert u["outcome"] == unguarded
    if unguarded == "ok":  # silently different from the same weight in the activation's dtype
        assert u["values"] != store["safe"]["unguarded"]["values"]
    assert g["outcome"] == "Refused" and g["kernels"] == []  # Refused is a ValueError
    assert f"misread {named}" in g["detail"] and "fused_qk_norm_rope_cache_quant.cu:" in g["detail"]
    assert list(g["interventions"].values()) == [1]


def test_refused_is_a_value_error() -> None:
    from aiter_norm_guard.guard.group_quant_store import Refused

    assert issubclass(Refused, ValueError)
