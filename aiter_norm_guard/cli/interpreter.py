"""Which Python a command runs, and whether that Python will load the guard at start.

``aiter-norm-guard run -- CMD`` sets ``AITER_NORM_GUARD=1``, but only an interpreter with this
package's start-up file acts on it.  CMD's interpreter need not be the launcher's (a pipx or
``uv tool`` install of the CLI, another ``python`` first on PATH), so it is asked: a short
subprocess that imports nothing beyond ``site`` (no torch, no guard).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*(\.exe)?$")
PROBE = (
    "import importlib.util, os, site\n"
    "dirs = list(getattr(site, 'getsitepackages', lambda: [])())\n"
    "dirs += [site.USER_SITE] if site.ENABLE_USER_SITE and site.USER_SITE else []\n"
    "pth = any(os.path.isfile(os.path.join(d, 'aiter_norm_guard.pth')) for d in dirs)\n"
    "print(int(pth), int(importlib.util.find_spec('_aiter_norm_guard_startup') is not None))\n"
)


def _shebang(path: str) -> list[str]:
    """The interpreter line of a script (``#!`` and pip's ``/bin/sh`` trampoline), split; [] if none."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024).decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    if not head or not head[0].startswith("#!"):
        return []
    words = shlex.split(head[0][2:], posix=True) if head[0][2:].strip() else []
    if words[:1] == ["/bin/sh"] and len(head) > 1 and head[1].startswith("'''exec' "):
        words = shlex.split(head[1][len("'''exec' ") :])[:1]  # pip's launcher for a long interpreter path
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    return words


def python_of(command: str, env: dict[str, str]) -> str | None:
    """The Python interpreter ``command`` runs: itself, or its shebang's; None when it is not Python."""
    path = shutil.which(command, path=env.get("PATH")) if os.sep not in command else command
    if path is None:
        return None
    if PYTHON_NAME.match(os.path.basename(path)):
        return path
    words = _shebang(path)
    if not words or not PYTHON_NAME.match(os.path.basename(words[0])):
        return None
    interp = words[0]
    return interp if os.sep in interp else shutil.which(interp, path=env.get("PATH"))


def loads_guard(python: str, env: dict[str, str]) -> bool | None:
    """Whether ``python`` reads this package's start-up file (and can import its entry); None: cannot ask."""
    if python == sys.executable:
        from aiter_norm_guard.bootstrap.startup import startup_file

        return startup_file() is not None
    probe_env = {k: v for k, v in env.items() if k != "AITER_NORM_GUARD"}  # no guard start-up in the probe
    try:
        out = subprocess.run([python, "-c", PROBE], env=probe_env, capture_output=True, text=True, timeout=20)
        pth, module = (int(w) for w in out.stdout.split())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return bool(pth and module)


def warning(argv: list[str], env: dict[str, str]) -> str | None:
    """What to tell the user before running ``argv`` guarded, or None when its Python loads the guard."""
    python = python_of(argv[0], env)
    if python is None:  # not Python (a shell script, a binary): its Python children are checked by doctor
        return None
    ok = loads_guard(python, env)
    if ok:
        return None
    if ok is None:
        return f"could not ask {python} whether it loads the guard; it may run unguarded"
    which = "" if os.path.basename(python) == os.path.basename(argv[0]) else f" (which {argv[0]!r} runs)"
    return (
        f"{python}{which} has no aiter_norm_guard start-up file: the command will run UNGUARDED. Install "
        f"the wheel into that interpreter ({python} -m pip install ...), or run it with one that has it"
    )
