"""``selftest``'s report as text: the table an operator reads, and the exit code."""

from __future__ import annotations

from typing import Any


def err_text(err: float | None) -> str:
    return "another shape, or NaN / inf where native is finite" if err is None else f"max abs error {err:.3g}"


def format_table(report: dict[str, Any], colour: bool = False) -> str:
    """The report as a plain-text table (ANSI colour only when asked)."""

    def paint(word: str) -> str:
        code = {"ok": "32", "fail": "31", "fault": "31", "wrong": "33"}.get(word) if colour else None
        return f"\033[{code}m{word}\033[0m" if code else word

    emulated = report["mode"] == "emulated"
    label = "EMULATED (CPU, memory-faithful aiter kernel double)" if emulated else f"DEVICE {report.get('device')}"
    lines = [f"aiter-norm-guard selftest — {label}; sglang {report.get('sglang')}; {report['tokens']} tokens"]
    if not report.get("guard_enabled_in_env", True):
        lines.append(
            f"note: the guard was forced on for this test, but this environment disables it "
            f"({report['env_reason']}): sglang will run unguarded"
        )
    if "error" in report:
        return "\n".join([*lines, f"error: {report['error']}"])
    if report["cases"]:
        head = f"{'case':24} {'x shape / stride':34} {'unguarded':9} {'guarded':7} {'max abs err':>11}  note"
        lines += [head, "-" * len(head)]
    for c in report["cases"]:
        err = "-" if c["max_abs_error"] is None else f"{c['max_abs_error']:.3g}"
        lines.append(
            f"{c['case']:24} {c['x']:34} {paint(c['unguarded']):9} {paint(c['guarded']):7} "
            f"{err:>11}  {c['unguarded_detail'][:60]}"
        )
    skipped = report.get("not_applicable_cases") or []
    if report.get("requested"):
        lines += [f"{c['case']:24} n/a: {c['reason']}" for c in skipped]
    elif skipped:
        lines.append(f"not applicable here: {', '.join(c['case'] for c in skipped)}")
    iso = report.get("isolation")
    if iso and report["cases"]:
        lines.append(
            f"unguarded calls isolated: {iso['children']} child process(es), "
            f"up to {iso['jobs']} side by side; "
            "a child that faults is replaced for the cases left"
        )
    if "not_applicable" in report:
        return "\n".join([*lines, f"NOT APPLICABLE: {report['not_applicable']}"])
    verdict = "PASS: every case matches forward_native with the guard" if report["passed"] else "FAIL"
    return "\n".join([*lines, verdict])


def exit_code(report: dict[str, Any]) -> int:
    """0 passed, or nothing to run here (as ``doctor`` says; ``passed`` is None then); 1 a failure or an error."""
    if "error" in report:
        return 1
    return 0 if report.get("passed") or "not_applicable" in report else 1
