"""The guard's environment switches: ``AITER_NORM_GUARD`` and ``AITER_NORM_GUARD_ROW_STRIDED``.

This module owns the switch: it parses it, and it is the only place that writes it (on
for Python children, and back as it was on uninstall).  A value the guard wrote itself is
never mistaken for the user's: :func:`read` returns what the process had before.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NamedTuple

from aiter_norm_guard import _state
from aiter_norm_guard._log import log_once

ENABLE_VAR = "AITER_NORM_GUARD"
ROW_STRIDE_VAR = "AITER_NORM_GUARD_ROW_STRIDED"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: name -> (the value before the guard wrote, the value it wrote)


class Flag(NamedTuple):
    """A parsed switch: its value, and why it has that value."""

    value: bool
    reason: str


def warn_unknown(name: str, raw: str, default: bool) -> None:
    """One warning per process for a value that is neither an on- nor an off-word."""
    startup = sys.modules.get("_aiter_norm_guard_startup")
    if raw in getattr(startup, "warned", ()):  # the start-up file said it already in this process
        return
    log_once(
        f"bad-value:{name}",
        logging.WARNING,
        "aiter_norm_guard: ignoring %s=%r; accepted values are %s (on) or %s (off); using the default (%s)",
        name,
        raw,
        "/".join(TRUE_WORDS),
        "/".join(FALSE_WORDS),
        "on" if default else "off",
    )


def parse_flag(name: str, raw: str | None, default: bool, default_reason: str) -> Flag:
    """Parse ``raw`` (case-insensitive); an unknown value warns once and gives the default."""
    if raw is None or raw.strip() == "":
        return Flag(default, default_reason)
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return Flag(True, f"{name}={raw}")
    if word in FALSE_WORDS:
        return Flag(False, f"{name}={raw}")
    warn_unknown(name, raw, default)
    return Flag(default, f"{name}={raw!r} not understood; default: {default_reason}")


def is_on(raw: str | None) -> bool:
    """True only for an explicit on-word (``1/true/yes/on``, any case)."""
    return (raw or "").strip().lower() in TRUE_WORDS


def is_off(raw: str | None) -> bool:
    """True only for an explicit off-word (``0/false/no/off``, any case)."""
    return (raw or "").strip().lower() in FALSE_WORDS


def read(name: str) -> str | None:
    """The user's value: None when unset or unreadable; never a value the guard wrote itself."""
    try:
        raw = os.environ.get(name)
    except Exception:  # an unreadable environment must not break the host
        return None
    before, ours = _state.WRITTEN_ENV.get(name, (None, None))
    return before if ours is not None and raw == ours else raw


def enabled(default: bool = True, default_reason: str = "unset: enabled by the import") -> Flag:
    """Whether the guard may patch in this process."""
    return parse_flag(ENABLE_VAR, read(ENABLE_VAR), default, default_reason)


def row_strided() -> Flag:
    """Whether 2-D row-strided views go to the kernel without a copy (opt-in)."""
    return parse_flag(ROW_STRIDE_VAR, read(ROW_STRIDE_VAR), False, "unset: off")


def enable_for_children() -> None:
    """Turn the switch on in this process's environment, so Python children install the guard.

    Only where it is unset or empty: never over a value the user set, understood or not (an
    off-word stays off, an on-word needs nothing, a misspelt off such as ``disable`` is not
    turned into an on for every child).
    """
    try:
        raw = os.environ.get(ENABLE_VAR)
        if raw is not None and raw.strip():
            return
        _state.WRITTEN_ENV.setdefault(ENABLE_VAR, (raw, "1"))
        os.environ[ENABLE_VAR] = "1"
    except Exception:
        pass


def restore_for_children() -> None:
    """Undo :func:`enable_for_children` if the value is still the one the guard wrote."""
    try:
        before, ours = _state.WRITTEN_ENV.pop(ENABLE_VAR, (None, None))
        if ours is None or os.environ.get(ENABLE_VAR) != ours:
            return
        if before is None:
            os.environ.pop(ENABLE_VAR, None)
        else:
            os.environ[ENABLE_VAR] = before
    except Exception:
        pass
