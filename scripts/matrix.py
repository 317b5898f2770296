"""The release matrix: every guarded entry's behavioural cases against every pinned sglang release.

For each release in RELEASES it runs MATRIX_FILES in a fresh interpreter with that release's
overlay (``.envs/sglang-X``) on ``PYTHONPATH``, collects pass / fail / n/a per case from
pytest's JUnit XML, prints the release x case table, writes it as JSON (``results/matrix.json``)
and as an entry x check x release Markdown table (``results/matrix.md``).  Exit status 1 if any
applicable case failed, a release's run broke, or nothing ran.  Run it with the interpreter
whose environment has the guard installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the pinned releases, oldest first: one per requirements/sglang-X.txt (as scripts/releases.sh lists them)
PINNED = sorted(
    (p.name[len("sglang-") : -len(".txt")] for p in (ROOT / "requirements").glob("sglang-*.txt")),
    key=lambda v: [int(n) if n.isdigit() else n for n in re.findall(r"\d+|[^\d.]+", v)],
)
RELEASES = os.environ.get("RELEASES", " ".join(PINNED)).split()
MATRIX_FILES = (
    "test_guard.py",
    "test_contract_fixes.py",
    "test_layer_boundary.py",
    "test_fuzz.py",
    "test_source_scan.py",
    "test_fused_paths.py",
    "test_adversarial.py",
    "test_dsv4_store.py",
)
OUT = ROOT / "results"


SHORT = {
    "guarded_call_matches_forward_native": "matches forward_native",
    "guarded_call_equals_release_on_canonical_inputs": "bit-exact vs the release on canonical inputs",
    "unguarded_release_faults_or_is_wrong": "the bug reproduced unguarded",
    "guard_adds_no_second_copy": "no second copy",
    "safe_layouts_reach_the_kernel_without_a_copy": "safe layouts reach the kernel uncopied",
    "wrong_hidden_size_raises_like_native_and_never_reaches_the_kernel": "wrong hidden size: native's error",
    "residual_shape_semantics_are_natives": "residual of another shape: native's semantics",
    "native_exceptions_propagate_and_the_kernel_is_never_reached": "native's exceptions propagate",
    "strided_weight_goes_to_native_where_the_guard_looks": "strided weight: native",
    "pad_path_gives_the_originals_result_shape_included": "x_pad path: the original's result and shape",
    "pad_path_wrong_hidden_size_raises_like_native": "x_pad path: wrong hidden size raises",
    "release_without_an_aiter_entry_warns_once_and_raises_nothing": "no aiter entry: one warning",
    "fuzz_every_input_meets_its_oracle": "fuzz: every input meets its oracle",
    "installed_release_report_matches_what_the_patcher_did": "source scan agrees with the patcher",
    "a_weight_the_kernel_would_misread_goes_to_native_on_the_safe_path_too": "expanded / strided weight: native",
    "an_older_forward_native_signature_still_gets_the_fallback": "an older forward_native signature",
    "the_aiter_branch_alone_is_read": "source scan reads the aiter branch alone",
    "layernorm_reads_hidden_size_weight_elements_whatever_x_says": "weight of another length than hidden_size",
    "layernorm_x_of_another_hidden_size_goes_native": "x of another hidden size: native",
    "pad_path_weight_is_read_with_unit_stride": "x_pad path: strided / expanded weight",
    "post_is_only_summed_so_a_column_slice_costs_no_copy_and_no_slow_path": "post column slice: no copy, fast path",
    "post_without_a_residual_is_ignored_as_the_release_ignores_it": "post without residual: ignored",
    "zero_rows_past_the_first_dimension_are_caught_where_the_release_checks_only_shape_0": (
        "zero rows past the first dimension"
    ),
    "host_tensors_never_reach_the_kernel": "host tensors never reach the kernel",
}
RMS = "RMSNorm.forward_aiter"
PREFIX_ENTRY = {"gemma": "GemmaRMSNorm.forward_hip", "layernorm": "LayerNorm.forward_hip"}
ENTRY_OF_TEST = {  # tests without an entry among their parameters
    "strided_weight_goes_to_native_where_the_guard_looks": RMS,
    "an_older_forward_native_signature_still_gets_the_fallback": RMS,
    "pad_path_gives_the_originals_result_shape_included": RMS,
    "pad_path_wrong_hidden_size_raises_like_native": RMS,
    "layernorm_reads_hidden_size_weight_elements_whatever_x_says": "LayerNorm.forward_hip",
    "layernorm_x_of_another_hidden_size_goes_native": "LayerNorm.forward_hip",
    "pad_path_weight_is_read_with_unit_stride": RMS,
    "post_is_only_summed_so_a_column_slice_costs_no_copy_and_no_slow_path": RMS,
    "post_without_a_residual_is_ignored_as_the_release_ignores_it": RMS,
    "zero_rows_past_the_first_dimension_are_caught_where_the_release_checks_only_shape_0": RMS,
    "host_tensors_never_reach_the_kernel": RMS,
}
#: test_fused_paths.py: each fused path through sglang's own caller (test -> entry, check)
FUSED_PATHS = {
    "allreduce_fusion_safe_input_takes_the_fused_kernel_bit_exact": (
        "GroupCoordinator.fused_allreduce_rmsnorm",
        "safe input: the fused kernel, bit-exact",
    ),
    "allreduce_fusion_hazard_takes_sglangs_unfused_route_guarded": (
        "GroupCoordinator.fused_allreduce_rmsnorm",
        "hazard unguarded; guarded: sglang's unfused route",
    ),
    "mla_qk_rmsnorm_safe_column_slices_are_bit_exact": (
        "forward_mla(_rocm).fused_qk_rmsnorm_bf16",
        "latent column slices: bit-exact",
    ),
    "mla_qk_rmsnorm_hazard_fails_unguarded_and_is_native_guarded": (
        "forward_mla(_rocm).fused_qk_rmsnorm_bf16",
        "hazard unguarded; guarded: native",
    ),
    "triton_quant_safe_inputs_are_bit_exact": ("Triton fused_rms_*_quant (gfx95)", "safe inputs: bit-exact"),
    "triton_quant_read_past_unguarded_is_a_value_error_guarded": (
        "Triton fused_rms_*_quant (gfx95)",
        "read past unguarded; guarded: ValueError",
    ),
    "triton_quant_mxfp4_transposed_input_is_read_as_its_contiguous_copy": (
        "Triton fused_rms_*_quant (gfx95)",
        "mxfp4 transposed: its contiguous copy's result",
    ),
    "diffusion_rmsnorm_safe_inputs_are_the_releases_bit_for_bit": (
        "multimodal_gen RMSNorm.forward_aiter",
        "safe inputs: bit-exact vs the release",
    ),
    "diffusion_rmsnorm_hazard_faults_unguarded_and_is_native_guarded": (
        "multimodal_gen RMSNorm.forward_aiter",
        "fault unguarded; guarded: native",
    ),
    "qwen3_fused_gate_excludes_rl_on_policy_target": (
        "qwen3 fused qk-norm + RoPE + KV (not guarded)",
        "source: gate excludes rl_on_policy_target",
    ),
    "qwen3_fused_kernel_gets_the_fresh_qkv_projection": (
        "qwen3 fused qk-norm + RoPE + KV (not guarded)",
        "source: the kernel gets the fresh qkv_proj output",
    ),
    "the_guard_patches_nothing_in_qwen3": (
        "qwen3 fused qk-norm + RoPE + KV (not guarded)",
        "the guard patches nothing in qwen3.py",
    ),
}
ENTRY_OF_TEST.update({test: entry for test, (entry, _) in FUSED_PATHS.items()})
SHORT.update({test: check for test, (_, check) in FUSED_PATHS.items()})


def entry_of(module: str, test: str, params: str) -> str:
    """The guarded entry a test case is about: from its parameters, its name or its file.

    Case names say their entry (``aiter_norm_guard.cli.cases``: ``gemma_*``, ``layernorm_*``, else RMSNorm)."""
    for part in params.split("-"):
        if part.endswith(("forward_aiter", "forward_hip")):
            return part
    for part in params.split("-"):
        if re.fullmatch(r"[a-z][a-z0-9_]*_[a-z0-9_]+", part) and module == "test_guard":
            return PREFIX_ENTRY.get(part.split("_")[0], RMS)
    if module == "test_layer_boundary":
        return "_fused_rmsnorm_fp8_per_token_quant"
    return ENTRY_OF_TEST.get(test, "(all)")


def case_of(classname: str, name: str) -> str:
    """``entry | check | parameters`` for one JUnit test case."""
    m = re.match(r"test_(.*?)(?:\[(.*)\])?$", name)
    assert m
    test, params = m.group(1), m.group(2) or ""
    entry = entry_of(classname.rsplit(".", 1)[-1], test, params)
    return f"{entry} | {SHORT.get(test, test.replace('_', ' '))} | {params}"


def run_release(release: str) -> tuple[dict[str, str], str]:
    OUT.mkdir(exist_ok=True)
    (OUT / f"fuzz-{release}.json").unlink(missing_ok=True)
    xml = OUT / f"junit-{release}.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".envs" / f"sglang-{release}")}
    env.setdefault("FUZZ_EXAMPLES", "1000")
    env.pop("AITER_NORM_GUARD", None)
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
        *(str(ROOT / "tests" / f) for f in MATRIX_FILES),
        f"--junitxml={xml}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    results: dict[str, str] = {}
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            kinds = {child.tag for child in tc}
            outcome = "fail" if kinds & {"failure", "error"} else "n/a" if "skipped" in kinds else "pass"
            results[case_of(tc.get("classname", ""), tc.get("name", "?"))] = outcome
    tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode not in (0, 5) and not any(v == "fail" for v in results.values()):
        results["run"] = "fail"
        tail += "\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    return results, tail


def summary(releases: list[str], table: dict[str, dict[str, str]]) -> str:
    """Entry x check x release (cases grouped): pass (count), n/a (count) or FAIL, as a Markdown table."""
    groups: dict[str, dict[str, list[str]]] = {}
    for r in releases:
        for case, outcome in sorted(table[r].items()):
            entry, check = [*case.split(" | "), "the release's run"][:2]  # "run": the run itself broke
            groups.setdefault(f"{entry} | {check}", {}).setdefault(r, []).append(outcome)

    def cell(vs: list[str]) -> str:
        if "fail" in vs:
            return f"{vs.count('fail')} FAIL"
        passed, na = vs.count("pass"), vs.count("n/a")
        return "n/a" if not passed else f"pass ({passed})" + (f", n/a ({na})" if na else "")

    lines = ["| entry | check | " + " | ".join(releases) + " |", "| --- | --- |" + " --- |" * len(releases)]
    lines += [f"| {g} | " + " | ".join(cell(row.get(r, [])) for r in releases) + " |" for g, row in groups.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    table: dict[str, dict[str, str]] = {}
    with ThreadPoolExecutor(max_workers=int(os.environ.get("MATRIX_JOBS", "2"))) as pool:  # one interpreter each
        for release, (results, tail) in zip(RELEASES, pool.map(run_release, RELEASES), strict=True):
            table[release] = results
            print(f"sglang {release}: {tail}", flush=True)
    cases = sorted({c for row in table.values() for c in row})
    width = max(len(c) for c in cases)
    print(f"\n{'case':<{width}}  " + "  ".join(f"{r:>6}" for r in RELEASES))
    for c in cases:
        print(f"{c:<{width}}  " + "  ".join(f"{table[r].get(c, '-'):>6}" for r in RELEASES))
    OUT.mkdir(exist_ok=True)
    (OUT / "matrix.json").write_text(json.dumps({"releases": RELEASES, "table": table}, indent=2))
    (OUT / "matrix.md").write_text(summary(RELEASES, table))
    print("\n" + summary(RELEASES, table))
    failed = [(r, c) for r, row in table.items() for c, v in row.items() if v == "fail"]
    ran = sum(v == "pass" for row in table.values() for v in row.values())
    for release in RELEASES:  # the fuzz run's inputs per oracle branch
        fuzz = OUT / f"fuzz-{release}.json"
        if fuzz.exists():
            print(f"fuzz sglang {release}: {json.loads(fuzz.read_text())}")
    print(f"\nmatrix: {ran} passed, {len(failed)} failed across {len(RELEASES)} releases; results/matrix.json")
    for r, c in failed:
        print(f"FAILED sglang {r}: {c}")
    return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
