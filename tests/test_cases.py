"""The shared case catalogue: names that say their entry, inputs that are what they claim."""

from __future__ import annotations

import torch

from aiter_norm_guard.cli.cases import BY_NAME, CASES, GEMMA, LAYER, describe, qkv_views


def test_case_names_say_their_entry() -> None:
    """scripts/matrix.py groups cases by entry from their names."""
    for case in CASES:
        prefix = {GEMMA: "gemma_", LAYER: "layernorm_"}.get(case.entry)
        assert case.name.startswith(prefix) if prefix else not case.name.startswith(("gemma_", "layernorm_"))


def test_the_bug_reports_views() -> None:
    q, k = qkv_views(2048, torch.bfloat16, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert describe(q) == "(2048, 32, 128) / (6144, 128, 1)" and k.storage_offset() == 4096
    inp = BY_NAME["post_residual_path"].build(4, torch.bfloat16, torch.device("cpu"), torch.Generator())
    assert inp.args()[0].shape == inp.args()[1].shape == inp.args()[2].shape  # type: ignore[union-attr]
    assert (
        BY_NAME["dtype_mismatch"].build(4, torch.bfloat16, torch.device("cpu"), torch.Generator()).weight_dtype
        == torch.float32
    )


def test_readme_names_the_entries_selftest_covers() -> None:
    """README said 'every entry's cases ... unguarded (in a child)': the cases cover three entries, and
    isolation is the default on a GPU only."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    entries = sorted({case.entry.split(".")[0] for case in CASES})
    assert entries == ["GemmaRMSNorm", "LayerNorm", "RMSNorm"]
    assert "`selftest` runs the RMSNorm, GemmaRMSNorm and LayerNorm cases that apply to this sglang" in readme
    assert "On a GPU (and with `--isolate`) the unguarded calls run in child processes" in readme
    assert "every entry's cases" not in readme and "a child imports sglang once" in readme
