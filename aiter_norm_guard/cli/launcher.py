"""``aiter-norm-guard run -- CMD...``: run a command with the guard on in it and its children.

Like ``opentelemetry-instrument`` and ``ddtrace-run``: it sets ``AITER_NORM_GUARD=1``
and replaces itself with the command (``exec``), so the exit status and signals are
the command's own.  Python processes pick the guard up from the installed start-up file; where
the command's own Python has none (another interpreter than this one), it warns, and runs it anyway.
"""

from __future__ import annotations

import os
import sys

from aiter_norm_guard.bootstrap.settings import ENABLE_VAR
from aiter_norm_guard.bootstrap.startup import startup_file

USAGE = "usage: aiter-norm-guard run -- COMMAND [ARGS...]  (COMMAND runs with AITER_NORM_GUARD=1)"


def run(argv: list[str]) -> int:
    """Exec ``argv`` with the guard enabled; returns only on failure to start it."""
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or not argv[0]:
        print(USAGE, file=sys.stderr)
        return 2
    env = {**os.environ, ENABLE_VAR: "1"}
    try:
        from aiter_norm_guard.cli.interpreter import warning

        problem = warning(argv, env)  # the command's own Python: it need not be this one (pipx, another venv)
    except Exception as exc:  # the check is advice: it never stops the command
        problem = f"could not check the command's interpreter ({type(exc).__name__}: {exc})"
    if problem is None and startup_file() is None:
        problem = "the start-up file is not installed (install the wheel); Python children will not load the guard"
    if problem:
        print(f"aiter-norm-guard: warning: {problem}", file=sys.stderr)
    try:
        os.execvpe(argv[0], argv, env)
    except (OSError, ValueError) as exc:  # as a shell says it: 127 not found, 126 found but not runnable
        print(f"aiter-norm-guard: cannot run {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached
