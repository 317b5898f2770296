"""``selftest``: run the installed sglang's real norm entries on the contract cases, unguarded and guarded.

On a GPU (ROCm with aiter by default, or ``--device``) it uses the kernels sglang imported, says
which device and which ``aiter`` they came from, and runs each unguarded call in a child
process so a memory fault cannot take the selftest down.  Elsewhere it uses the memory-faithful
kernel double and says so ("emulated") in every report.  Each case runs only where the
installed sglang has the entry's aiter branch and selected it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from aiter_norm_guard.cli.cases import BY_NAME, CASES, Case, CaseInputs, describe, make_module
from aiter_norm_guard.cli.selftest_report import err_text

FAULT_EXIT = 3


def real_rocm() -> bool:
    """A ROCm build of torch with a visible GPU."""
    return bool(torch.version.hip) and torch.cuda.is_available()


def device_label() -> str:
    """The device, torch's HIP version and the ``aiter`` sglang imported its kernels from: what ran."""
    aiter = sys.modules.get("aiter")
    if aiter is None:
        origin = "no aiter imported"
    elif getattr(aiter, "__aiter_norm_guard_emulated__", False):
        origin = f"a test double of aiter's kernels ({aiter.__doc__ or 'not aiter'})"
    else:
        origin = f"aiter {getattr(aiter, '__version__', '?')} at {getattr(aiter, '__file__', '?')}"
    return f"{torch.cuda.get_device_name()}, torch.version.hip={torch.version.hip}, kernels from {origin}"


def _pairs(got: Any, want: Any) -> list[tuple[Any, Any]]:
    return list(zip(got, want, strict=False)) if isinstance(want, tuple) else [(got, want)]


def _max_err(got: Any, want: Any) -> float | None:
    """The largest absolute difference; None where there is no number (other shape, NaN or inf)."""
    err = 0.0
    for g, w in _pairs(got, want):
        if g.shape != w.shape:
            return None
        if g.numel():
            diff = (g.float() - w.float()).abs()
            if not bool(torch.isfinite(diff).all()):
                return None  # garbage: NaN or inf where forward_native is finite
            err = max(err, diff.max().item())
    return err


def _close(got: Any, want: Any, tol: float | None) -> bool:
    try:
        for g, w in _pairs(got, want):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
    except (AssertionError, TypeError):
        return False
    return isinstance(got, tuple) == isinstance(want, tuple)


def tolerance(case: Case) -> float | None:
    """One bf16 ulp at |v| < 4 where the aiter path rounds in bf16 and native in fp32: sglang adds
    residual + post in bf16 (RMSNorm), and computes ``weight + 1`` in bf16 (Gemma, 0.5.10)."""
    return 2**-6 if case.uses_post or case.entry.startswith("Gemma") else None


def _build(layernorm: Any, case: Case, tokens: int, device: torch.device) -> tuple[Any, CaseInputs]:
    inp = case.build(tokens, torch.bfloat16, device, torch.Generator().manual_seed(0))
    return make_module(layernorm, case.entry, inp.hidden, torch.bfloat16, inp.weight_dtype, device), inp


def _unguarded(original: Any, norm: Any, inp: CaseInputs, want: Any, tol: float | None) -> tuple[str, str]:
    try:
        got = original(norm, *inp.args())
        if inp.x.is_cuda and torch.cuda.is_available():  # (the emulation reports CPU memory as device memory)
            torch.cuda.synchronize()
    except Exception as exc:
        return "fault", f"{type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
    if _close(got, want, tol):
        return "ok", ""
    return "wrong", err_text(_max_err(got, want))


def _unguarded_isolated(name: str, tokens: int, emulated: bool) -> tuple[str, str]:
    """Run one unguarded case in a child interpreter; a crash there is reported as a fault."""
    code = f"from aiter_norm_guard.cli.selftest import child_main; child_main({name!r}, {tokens}, {emulated!r})"
    env = {**os.environ, "AITER_NORM_GUARD": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode == 0 and proc.stdout.strip():
        outcome, detail = json.loads(proc.stdout.strip().splitlines()[-1])
        return outcome, detail
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:90]
    return "fault", f"child exit {proc.returncode}: {tail}"


def _original(layernorm: Any, case: Case) -> Any:
    from aiter_norm_guard.patching.guard import original_of

    cls, attr = case.entry.split(".")
    fn = getattr(getattr(layernorm, cls), attr)
    return original_of(fn) or fn


def child_main(name: str, tokens: int, emulated: bool = False) -> None:
    """Child-process body of an isolated unguarded case (guard off in this process)."""
    if emulated:
        from aiter_norm_guard_emulation import EmulatedRocm

        EmulatedRocm().activate()
    import sglang.srt.layers.layernorm as ln

    case = BY_NAME[name]
    norm, inp = _build(ln, case, tokens, torch.device("cpu" if emulated else "cuda"))
    want = norm.forward_native(*inp.args())
    print(json.dumps(_unguarded(_original(ln, case), norm, inp, want, tolerance(case))))


def _not_applicable(ln: Any, case: Case, state: dict[str, Any] | None, version: str | None) -> str | None:
    """Why ``case`` cannot run on this sglang (None: it can)."""
    if state is None or not state.get("present"):
        return f"{case.entry} is not in sglang {version}"
    if not state.get("aiter_branch"):
        return f"{case.entry} has no aiter branch in sglang {version}"
    if not state.get("patched"):
        return f"sglang did not select {case.entry}'s aiter path here"
    if case.uses_post and "post_residual_addition" not in _original(ln, case).__code__.co_varnames:
        return f"{case.entry} takes no post_residual_addition in sglang {version}"
    return None


def run(
    tokens: int = 2048, emulated: bool | None = None, isolate: bool | None = None, cases: list[str] | None = None
) -> dict[str, Any]:
    """Run the cases (all by default) unguarded and guarded; return the report (see ``format_table``)."""
    from aiter_norm_guard.bootstrap import settings

    unknown = sorted(set(cases or ()) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; known: {sorted(BY_NAME)}")
    if tokens < 1:
        raise ValueError(f"--tokens must be at least 1 (got {tokens}); zero rows are a case of their own")
    emulated = (not real_rocm()) if emulated is None else emulated
    isolate = (not emulated) if isolate is None else isolate
    if emulated:
        from aiter_norm_guard_emulation import EmulatedRocm

        EmulatedRocm().activate()
    import aiter_norm_guard

    status = aiter_norm_guard.install(force=True)
    flag = settings.enabled()
    report: dict[str, Any] = {"mode": "emulated" if emulated else "device", "tokens": tokens, "cases": [],
                              "guard_enabled_in_env": flag.value, "env_reason": flag.reason,
                              "passed": False}  # fmt: skip
    if status.get("error"):  # e.g. wrapt missing: sglang imported from now on would stay unguarded
        report["error"] = f"the guard cannot install in this interpreter: {status['error']}"
        return report
    try:
        import sglang.srt.layers.layernorm as ln
    except Exception as exc:
        report["error"] = f"cannot import sglang's layernorm module: {exc!r}"
        return report
    finally:
        if not emulated:
            report["device"] = device_label()
    status = aiter_norm_guard.status()
    report["sglang"] = status["sglang"]["version"]
    states = {t["name"]: t for t in status["targets"]}
    failed = [f"{t['name']}: {t['error']}" for t in status["targets"] if t.get("error")]
    if failed:
        report["error"] = f"the guard could not patch {'; '.join(failed)}"
        return report
    if not any(t["patched"] for t in status["targets"]):
        report["not_applicable"] = "this sglang has no aiter norm entry selected here: nothing to guard, nothing run"
        report["passed"] = None  # nothing ran: neither passed nor failed
        return report
    device = torch.device("cpu" if emulated else "cuda")
    skipped: list[dict[str, str]] = []
    for case in CASES:
        if cases and case.name not in cases:
            continue
        why = _not_applicable(ln, case, states.get(case.entry), report["sglang"])
        if why is not None:
            skipped.append({"case": case.name, "entry": case.entry, "reason": why})
            continue
        report["cases"].append(_run_case(ln, case, _original(ln, case), tokens, device, emulated, isolate))
    report["not_applicable_cases"] = skipped
    report["requested"] = list(cases) if cases else None
    if not report["cases"]:
        report["not_applicable"] = "none of the requested cases applies to this sglang"
    report["passed"] = all(c["guarded"] == "ok" for c in report["cases"]) if report["cases"] else None
    return report


def _run_case(ln: Any, case: Case, original: Any, tokens: int, device: torch.device, emulated: bool,
              isolate: bool) -> dict[str, Any]:  # fmt: skip
    """One case, unguarded and guarded, as a report row."""
    row: dict[str, Any] = {"case": case.name, "entry": case.entry, "description": case.description, "x": "-",
                           "residual": "-"}  # fmt: skip
    try:  # the installed sglang's own module and reference result
        norm, inp = _build(ln, case, tokens, device)
        want = norm.forward_native(*inp.args())
    except Exception as exc:
        row.update(unguarded="n/a", guarded="fail", max_abs_error=None,
                   unguarded_detail=f"cannot build the case here: {type(exc).__name__}: {exc}")  # fmt: skip
        return row
    tol = tolerance(case)
    before, detail = (
        _unguarded_isolated(case.name, tokens, emulated) if isolate else _unguarded(original, norm, inp, want, tol)
    )
    try:
        got = getattr(norm, case.entry.split(".")[1])(*inp.args())
        after, err = ("ok" if _close(got, want, tol) else "fail"), _max_err(got, want)
    except Exception as exc:
        after, err, detail = "fail", None, f"guarded raised {type(exc).__name__}: {exc}"
    row.update(x=describe(inp.x), residual=describe(inp.residual), unguarded=before, unguarded_detail=detail,
               guarded=after, max_abs_error=err)  # fmt: skip
    return row
