"""Command line: ``aiter-norm-guard {doctor,selftest,run,status}`` (also ``python -m aiter_norm_guard``).

Exit codes (2 is a usage error everywhere; ``run`` exits with its command's status):

- ``doctor`` (its first line: the verdict in one sentence, with the fix): 1 when an entry is exposed
  (present, with an aiter branch) and some way of starting sglang (launch_server, serve, Engine,
  bench_one_batch, ...; not one that cannot start in this Python: --use-ray without ray) would run it unguarded,
  whatever the reason (AITER_NORM_GUARD=0, wrapt missing, no start-up file, a way that does not
  load sglang's plugins), which the verdict says; 1 when it cannot tell; 0 when every way is
  protected or there is nothing to guard, or when this host takes no aiter path (torch is not a
  ROCm build and aiter is not installed; ``--as-rocm`` judges as if it were a ROCm host with aiter).
- ``selftest``: 0 when every case that applies here passes, or none applies; 1 when a case
  fails or the guard cannot install.  Its --json has the same ``exit_code``, and ``passed``
  true, false, or null where no case applies (nothing ran).

--json output is strict JSON (no NaN: a missing number is null).  A closed pipe
(``doctor | head -1``) ends the command quietly, with the exit code its answer has.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

DOCTOR_EXIT = (
    "Exit status: 1 when an entry is exposed (present, with an aiter branch) and some way of starting sglang "
    "would run it unguarded, whatever the reason (AITER_NORM_GUARD=0, wrapt missing, no start-up file, a way "
    "that does not load sglang's plugins), which the verdict says; 1 when it cannot tell; 0 when every way "
    "is protected or there is nothing to guard, or when this host takes no aiter path (torch is not a ROCm build and "
    "aiter is not installed: sglang here cannot reach an aiter kernel). A way whose model processes need not "
    "inherit your environment (Ray's workers) is protected by AITER_NORM_GUARD=1 only if the Ray cluster's "
    "workers run with it, which doctor cannot see: cannot tell (1) unless sglang's plugin loading reaches them; "
    "where ray is not importable here, --use-ray cannot start from this Python and is not held against it. "
    "--ways narrows the verdict to the ways you use. The first line is the verdict in one sentence, with the fix; "
    "the details follow. A closed pipe (doctor | head -1) keeps the exit status."
)


def strict(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def _emit(data: dict[str, Any], as_json: bool, table: str) -> None:
    """Print the answer; a reader that went away (``doctor | head -1``) is not an error: the exit code stays."""
    try:
        print(json.dumps(strict(data), indent=2, default=str, allow_nan=False) if as_json else table, flush=True)
    except BrokenPipeError:  # nothing left to say to it; what is still buffered goes nowhere at exit
        _stdout_gone()


def _stdout_gone() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that went away goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _status_table(s: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in s.items() if k != "interventions"]
    counts = ", ".join(f"{i['entry']}: {i['reason']} x{i['count']}" for i in s.get("interventions", []))
    lines.append(
        f"interventions: {counts or 'none in this process'} (counted per process, where the guard changed a call; "
        "sglang's model processes: aiter_norm_guard_interventions_total on its /metrics with --enable-metrics)"
    )
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value} (zero rows are a case of their own)")
    return value


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="aiter-norm-guard", description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser(
        "doctor",
        help="say whether this environment is protected, entry by entry and per way of starting sglang",
        description=DOCTOR_EXIT,
    )
    doc.add_argument("--json", action="store_true")
    doc.add_argument(
        "--as-rocm",
        action="store_true",
        help="judge as if on a ROCm host with aiter, whatever this host's torch and aiter are "
        "(e.g. to vet an image before deploying it to ROCm)",
    )
    doc.add_argument(
        "--ways",
        help="comma-separated ways of starting sglang to judge (those you use, e.g. "
        "launch_server,Engine); default: every way this sglang has",
    )
    st = sub.add_parser("selftest", help="prove the fix on this machine's device")
    st.add_argument("--json", action="store_true")
    st.add_argument("--tokens", type=_positive, default=2048)
    mode = st.add_mutually_exclusive_group()
    mode.add_argument("--emulated", action="store_true", default=None, help="use the CPU kernel double even on ROCm")
    mode.add_argument(
        "--device",
        dest="emulated",
        action="store_false",
        help="run on the GPU with the aiter sglang imports (the report names the GPU and where its kernels came from)",
    )
    st.add_argument(
        "--isolate", action="store_true", default=None, help="run unguarded cases in child processes (default on a GPU)"
    )
    st.add_argument("--cases", help="comma-separated case names (default: all)")
    st.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        help="isolated children side by side (default: one per two cores, at most 8)",
    )
    stat = sub.add_parser("status", help="print status() of a process that imported the guard")
    stat.add_argument("--json", action="store_true")
    sub.add_parser("run", help="run -- COMMAND...: run a command with the guard on in it and its children")
    return parser


def _selftest(args: argparse.Namespace) -> int:
    from aiter_norm_guard.cli import selftest, selftest_report

    def fail(message: str) -> int:
        if args.json:
            print(json.dumps({"error": message, "passed": False, "exit_code": 2}))
        print(f"aiter-norm-guard: {message}", file=sys.stderr)
        return 2

    if args.emulated is False and not selftest.torch.cuda.is_available():
        return fail("--device needs a GPU; none is visible")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
    try:
        report = selftest.run(
            tokens=args.tokens, emulated=args.emulated, isolate=args.isolate, cases=cases, jobs=args.jobs
        )
    except ValueError as exc:
        return fail(str(exc))
    report["exit_code"] = selftest_report.exit_code(report)  # --json: the verdict without reading `passed`
    _emit(report, args.json, selftest_report.format_table(report, colour=sys.stdout.isatty()))
    return int(report["exit_code"])


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "run":
        from aiter_norm_guard.cli.launcher import run

        return run(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        from aiter_norm_guard.cli import doctor

        only = tuple(w.strip() for w in (args.ways or "").split(",") if w.strip())
        try:
            d = doctor.diagnose(only, as_rocm=args.as_rocm)
        except doctor.UnknownWay as exc:
            print(f"aiter-norm-guard: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # doctor's own failure: it cannot tell, which is not a usage error
            print(f"aiter-norm-guard: doctor cannot tell: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        _emit(d, args.json, doctor.format_table(d))
        return 0 if d["ok"] else 1
    if args.command == "selftest":
        return _selftest(args)
    import aiter_norm_guard

    s = aiter_norm_guard.status()
    _emit(s, args.json, _status_table(s))
    return 0


def main(argv: list[str] | None = None) -> int:
    if sys.stdout is None:  # started with stdout closed: nowhere to answer
        return 1
    try:
        code = _dispatch(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # a reader gone before a write other than the answer (_emit keeps the answer's code)
        _stdout_gone()
        return 0
    except OSError as exc:  # stdout full or broken otherwise
        _stdout_gone()
        print(f"aiter-norm-guard: cannot write the answer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
