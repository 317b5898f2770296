"""``selftest``: run the installed sglang's real ``RMSNorm.forward_aiter`` on the bug report's cases.

On ROCm with aiter it uses the real kernels, and runs each unguarded call in a child
process so a memory fault cannot take the selftest down.  Elsewhere it uses the
memory-faithful kernel double and says so ("emulated") in every report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from aiter_norm_guard.cases import BY_NAME, CASES, CaseInputs, describe, weight

FAULT_EXIT = 3


def real_rocm() -> bool:
    """A ROCm build of torch with a visible GPU."""
    return bool(torch.version.hip) and torch.cuda.is_available()


def _max_err(got: Any, want: Any) -> float:
    pairs = zip(got, want, strict=False) if isinstance(want, tuple) else [(got, want)]
    err = 0.0
    for g, w in pairs:
        if g.shape != w.shape:
            return float("inf")
        if g.numel():
            diff = (g.float() - w.float()).abs()
            if not bool(torch.isfinite(diff).all()):
                return float("nan")  # garbage: NaN or inf where forward_native is finite
            err = max(err, diff.max().item())
    return err


def _close(got: Any, want: Any, post: bool) -> bool:
    tol = 2**-6 if post else None  # one bf16 ulp: aiter adds residual + post in bf16
    pairs = zip(got, want, strict=False) if isinstance(want, tuple) else [(got, want)]
    try:
        for g, w in pairs:
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
    except (AssertionError, TypeError):
        return False
    return isinstance(got, tuple) == isinstance(want, tuple)


def _build(rmsnorm: Any, name: str, tokens: int, device: torch.device) -> tuple[Any, CaseInputs]:
    inp = BY_NAME[name].build(tokens, torch.bfloat16, device, torch.Generator().manual_seed(0))
    norm = rmsnorm(inp.hidden, eps=1e-6).to(device)
    norm.weight.data = weight(inp.hidden, inp.weight_dtype or torch.bfloat16, device)
    return norm, inp


def _unguarded(original: Any, norm: Any, inp: CaseInputs, want: Any) -> tuple[str, str]:
    try:
        got = original(norm, *inp.args())
        if inp.x.is_cuda:
            torch.cuda.synchronize()
    except Exception as exc:
        return "fault", f"{type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
    if _close(got, want, inp.post is not None):
        return "ok", ""
    return "wrong", f"max abs error {_max_err(got, want):.3g}"


def _unguarded_isolated(name: str, tokens: int, emulated: bool) -> tuple[str, str]:
    """Run one unguarded case in a child interpreter; a crash there is reported as a fault."""
    code = f"from aiter_norm_guard.selftest import child_main; child_main({name!r}, {tokens}, {emulated!r})"
    env = {**os.environ, "AITER_NORM_GUARD": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode == 0 and proc.stdout.strip():
        outcome, detail = json.loads(proc.stdout.strip().splitlines()[-1])
        return outcome, detail
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:90]
    return "fault", f"child exit {proc.returncode}: {tail}"


def child_main(name: str, tokens: int, emulated: bool = False) -> None:
    """Child-process body of an isolated unguarded case (guard off in this process)."""
    if emulated:
        from aiter_norm_guard_emulation import EmulatedRocm

        EmulatedRocm().activate()
    import sglang.srt.layers.layernorm as ln

    norm, inp = _build(ln.RMSNorm, name, tokens, torch.device("cpu" if emulated else "cuda"))
    want = norm.forward_native(*inp.args())
    print(json.dumps(_unguarded(ln.RMSNorm.forward_aiter, norm, inp, want)))


def run(
    tokens: int = 2048, emulated: bool | None = None, isolate: bool | None = None, cases: list[str] | None = None
) -> dict[str, Any]:
    """Run the cases (all by default) unguarded and guarded; return the report (see ``format_table``)."""
    from aiter_norm_guard import settings, startup

    unknown = sorted(set(cases or ()) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; known: {sorted(BY_NAME)}")
    emulated = (not real_rocm()) if emulated is None else emulated
    isolate = (not emulated) if isolate is None else isolate
    emu = None
    if emulated:
        from aiter_norm_guard_emulation import EmulatedRocm

        emu = EmulatedRocm()
        emu.activate()
    import aiter_norm_guard
    from aiter_norm_guard.guard import WRAPPED_ATTR

    aiter_norm_guard.install(force=True)
    flag = settings.parse_flag(settings.ENABLE_VAR, startup.ENV_AT_START, True, "unset: enabled by the import")
    report: dict[str, Any] = {
        "mode": "emulated" if emulated else "rocm",
        "tokens": tokens,
        "cases": [],
        "guard_enabled_in_env": flag.value,
        "env_reason": flag.reason,
        "passed": False,
    }
    try:
        import sglang.srt.layers.layernorm as ln
    except Exception as exc:
        report["error"] = f"cannot import sglang's layernorm module: {exc!r}"
        return report
    report["sglang"] = aiter_norm_guard.status()["sglang"]["version"]
    if not getattr(ln, "_use_aiter", False) or not hasattr(ln.RMSNorm, "forward_aiter"):
        report["error"] = "this sglang does not use aiter's RMSNorm here (no forward_aiter, or not selected)"
        return report
    device = torch.device("cpu" if emulated else "cuda")
    original = getattr(ln.RMSNorm.forward_aiter, WRAPPED_ATTR, ln.RMSNorm.forward_aiter)
    for case in CASES:
        if cases and case.name not in cases:
            continue
        if case.uses_post and "post_residual_addition" not in original.__code__.co_varnames:
            continue
        norm, inp = _build(ln.RMSNorm, case.name, tokens, device)
        want = norm.forward_native(*inp.args())
        before, detail = (
            _unguarded_isolated(case.name, tokens, emulated) if isolate else _unguarded(original, norm, inp, want)
        )
        try:
            got = norm(*inp.args())
            after, err = ("ok" if _close(got, want, inp.post is not None) else "fail"), _max_err(got, want)
        except Exception as exc:
            after, err, detail = "fail", float("nan"), f"guarded raised {type(exc).__name__}: {exc}"
        report["cases"].append(
            {
                "case": case.name,
                "description": case.description,
                "x": describe(inp.x),
                "residual": describe(inp.residual),
                "unguarded": before,
                "unguarded_detail": detail,
                "guarded": after,
                "max_abs_error": err,
            }
        )
    if emu is not None:
        report["kernel_calls"] = len(emu.kernels.calls)
    report["passed"] = bool(report["cases"]) and all(c["guarded"] == "ok" for c in report["cases"])
    return report


def format_table(report: dict[str, Any], colour: bool = False) -> str:
    """The report as a plain-text table (ANSI colour only when asked)."""

    def paint(word: str) -> str:
        if not colour:
            return word
        code = {"ok": "32", "fail": "31", "fault": "31", "wrong": "33"}.get(word)
        return f"\033[{code}m{word}\033[0m" if code else word

    emulated = report["mode"] == "emulated"
    label = "EMULATED (CPU, memory-faithful aiter kernel double)" if emulated else "ROCm, real aiter"
    lines = [f"aiter-norm-guard selftest — {label}; sglang {report.get('sglang')}; {report['tokens']} tokens"]
    if not report.get("guard_enabled_in_env", True):
        lines.append(
            f"note: the guard was forced on for this test, but this environment disables it "
            f"({report['env_reason']}): sglang will run unguarded"
        )
    if "error" in report:
        return "\n".join([*lines, f"error: {report['error']}"])
    head = f"{'case':20} {'x shape / stride':34} {'unguarded':9} {'guarded':7} {'max abs err':>11}  note"
    lines += [head, "-" * len(head)]
    for c in report["cases"]:
        lines.append(
            f"{c['case']:20} {c['x']:34} {paint(c['unguarded']):9} {paint(c['guarded']):7} "
            f"{c['max_abs_error']:11.3g}  {c['unguarded_detail'][:60]}"
        )
    verdict = "PASS: every case matches forward_native with the guard" if report["passed"] else "FAIL"
    return "\n".join([*lines, verdict])
