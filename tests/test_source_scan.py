"""Reading an entry's aiter branch from source, and recognising its release by fingerprint, with no import."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

from aiter_norm_guard.targets import TARGETS, source_scan
from conftest import sglang_version

GEMMA_0_5_10 = """
class GemmaRMSNorm:
    def forward_hip(self, x, residual=None):
        if not _has_vllm_rms_norm:
            return self.forward_native(x, residual)
        w = self.weight.data + 1.0
        if _use_aiter:
            return rms_norm(x, w, self.variance_epsilon)
        else:
            if not x.is_contiguous():
                x = x.contiguous()
            out = torch.empty_like(x)
            rms_norm(out, x, w, self.variance_epsilon)
            return out
"""

GEMMA_0_5_16 = """
class GemmaRMSNorm:
    def forward_hip(self, x, residual=None):
        if _use_aiter and _has_rocm_triton_gemma_rms_norm:
            return rocm_triton_gemma_rmsnorm(x, self.weight.data, self.variance_epsilon)
        if _use_aiter:
            return self.forward_native(x, residual)
        else:
            x = x.contiguous()
            rms_norm(out, x, w, self.variance_epsilon)
"""


def report(src: str, attr: str = "GemmaRMSNorm.forward_hip") -> dict[str, Any]:
    return source_scan.entry_report(ast.parse(textwrap.dedent(src)), attr, ("rms_norm", "fused_add_rms_norm"))


def test_the_aiter_branch_alone_is_read() -> None:
    old = report(GEMMA_0_5_10)
    assert old["present"] and old["aiter_branch"]
    new = report(GEMMA_0_5_16)
    assert new["present"] and not new["aiter_branch"]  # rms_norm only under `else` of `if _use_aiter`
    assert report(GEMMA_0_5_10, "GemmaRMSNorm.forward_cuda") == {
        "present": False,
        "parameters": None,
        "aiter_branch": False,
    }


def test_installed_release_report_matches_what_the_patcher_did(layernorm: Any) -> None:
    import aiter_norm_guard

    tree = source_scan.parse(Path(layernorm.__file__).read_text(encoding="utf-8"))
    states = {t["name"]: t for t in aiter_norm_guard.install(force=True)["targets"]}
    for target in TARGETS:
        if target.module != "sglang.srt.layers.layernorm":
            continue
        r = source_scan.entry_report(tree, target.attribute, target.aiter_calls)
        assert r["present"] == states[target.name]["present"], (sglang_version(), target.name)
        assert bool(r["aiter_branch"]) == bool(states[target.name]["patched"]), (sglang_version(), target.name)


def test_every_entry_of_a_pinned_release_is_a_release_read_here(layernorm: Any) -> None:
    """The upstream table knows each guarded entry of every pinned release from 0.5.10 on, so the guard
    skips exactly what the release checks (an unknown source would get every check: safe, slower)."""
    from aiter_norm_guard.targets.upstream import UPSTREAM, upstream_in_source
    from conftest import version_tuple

    if version_tuple(sglang_version()) < (0, 5, 10):
        return  # no upstream check of any kind before 0.5.10: every check is right there
    root = Path(layernorm.__file__).resolve().parents[2]
    seen = 0
    for target in TARGETS:
        path = root.joinpath(*target.module.split(".")[1:]).with_suffix(".py")
        if target.name not in UPSTREAM or not path.is_file():  # bindings of aiter itself: no release code
            continue
        tree = source_scan.parse(path.read_text(encoding="utf-8"))
        if not source_scan.entry_report(tree, target.attribute, target.aiter_calls)["aiter_branch"]:
            continue
        digest, row = upstream_in_source(tree, target.name, target.attribute)
        assert row is not None, (sglang_version(), target.name, digest)
        seen += 1
    assert seen >= 1


def test_a_binding_is_present_where_the_module_binds_it_under_its_aiter_gate() -> None:
    tree = ast.parse(
        textwrap.dedent("""
        if _use_aiter:
            try:
                from aiter.ops.x import fused_qk_rmsnorm as fused_qk_rmsnorm_bf16
            except ImportError:
                def fused_qk_rmsnorm_bf16(q, w, e, k, kw, ke):
                    return q, k
        """)
    )
    assert source_scan.entry_report(tree, "fused_qk_rmsnorm_bf16", (), binding=True)["present"] is True
    assert source_scan.entry_report(tree, "fused_rms_fp8_group_quant", (), binding=True)["present"] is False
