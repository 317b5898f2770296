"""How child processes get the guard: the installed start-up file and the inherited switch.

A wheel install puts ``aiter_norm_guard.pth`` (and, for Python 3.15+, the PEP 829
``aiter_norm_guard.start``) into site-packages.  Every Python process reads it at start; it
imports nothing beyond ``os`` unless ``AITER_NORM_GUARD`` is set to something other than an
off-word, in which case ``_aiter_norm_guard_startup.run`` installs the guard (on-word) or
warns about the value (anything else) before any user code runs.
"""

from __future__ import annotations

import os
import site
import sys

from aiter_norm_guard.bootstrap import settings

PTH_NAME = "aiter_norm_guard.pth"
START_NAME = "aiter_norm_guard.start"


def site_dirs() -> list[str]:
    """Directories whose ``.pth`` files the interpreter reads at start."""
    dirs: list[str] = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:  # some virtualenv layouts
        pass
    user = getattr(site, "USER_SITE", None)
    if user and getattr(site, "ENABLE_USER_SITE", False):
        dirs.append(user)
    return [d for d in dict.fromkeys(dirs) if d]


def startup_file() -> str | None:
    """Path of the installed start-up file, or None when the package was not installed as a wheel."""
    for d in site_dirs():
        path = os.path.join(d, PTH_NAME)
        if os.path.isfile(path):
            return path
    return None


def children_inherit(raw: str | None = None, use_current: bool = True) -> dict[str, object]:
    """Whether Python children will install the guard at start.

    By default for children started now (the switch as it is now, including the guard's own
    write); with ``use_current=False``, for children of an environment whose switch is ``raw``.
    """
    if use_current:
        try:
            raw = os.environ.get(settings.ENABLE_VAR)
        except Exception:
            raw = None
    path = startup_file()
    return {
        "inherit": bool(settings.is_on(raw) and path),
        "env": raw,
        "startup_file": path,
        "python_reads_start_files": sys.version_info >= (3, 15),
    }
