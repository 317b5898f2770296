"""Command line: ``aiter-norm-guard {doctor,selftest,run,status}`` (also ``python -m aiter_norm_guard``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _emit(data: dict[str, Any], as_json: bool, table: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        from aiter_norm_guard.launcher import run

        return run(argv[1:])
    parser = argparse.ArgumentParser(prog="aiter-norm-guard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="say whether this environment is protected")
    doc.add_argument("--json", action="store_true")
    st = sub.add_parser("selftest", help="prove the fix on this machine's device")
    st.add_argument("--json", action="store_true")
    st.add_argument("--tokens", type=int, default=2048)
    mode = st.add_mutually_exclusive_group()
    mode.add_argument("--emulated", action="store_true", default=None, help="use the CPU kernel double even on ROCm")
    mode.add_argument(
        "--device", dest="emulated", action="store_false", help="require the real ROCm device and aiter kernels"
    )
    st.add_argument(
        "--isolate",
        action="store_true",
        default=None,
        help="run unguarded cases in child processes (default on a real GPU)",
    )
    st.add_argument("--cases", help="comma-separated case names (default: all)")
    stat = sub.add_parser("status", help="print status() of a process that imported the guard")
    stat.add_argument("--json", action="store_true")
    sub.add_parser("run", help="run -- COMMAND...: run a command with the guard on in it and its children")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from aiter_norm_guard import doctor

        d = doctor.diagnose()
        _emit(d, args.json, doctor.format_table(d))
        return 0 if d["ok"] else 1
    if args.command == "selftest":
        from aiter_norm_guard import selftest

        if args.emulated is False and not selftest.real_rocm():
            print("aiter-norm-guard: --device needs a ROCm GPU; none is visible", file=sys.stderr)
            return 2
        cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
        try:
            report = selftest.run(tokens=args.tokens, emulated=args.emulated, isolate=args.isolate, cases=cases)
        except ValueError as exc:
            print(f"aiter-norm-guard: {exc}", file=sys.stderr)
            return 2
        _emit(report, args.json, selftest.format_table(report, colour=sys.stdout.isatty()))
        return 0 if report.get("passed") else 1
    import aiter_norm_guard

    s = aiter_norm_guard.status()
    _emit(s, args.json, "\n".join(f"{k}: {v}" for k, v in s.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
