"""The guard's environment switches, read once: ``AITER_NORM_GUARD`` and friends."""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

from aiter_norm_guard._log import log_once

ENABLE_VAR = "AITER_NORM_GUARD"
ROW_STRIDE_VAR = "AITER_NORM_GUARD_ROW_STRIDED"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class Flag(NamedTuple):
    """A parsed switch: its value, and why it has that value."""

    value: bool
    reason: str


def parse_flag(name: str, raw: str | None, default: bool, default_reason: str) -> Flag:
    """Parse ``raw`` (case-insensitive); an unknown value warns once and gives the default."""
    if raw is None or raw.strip() == "":
        return Flag(default, default_reason)
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return Flag(True, f"{name}={raw}")
    if word in FALSE_WORDS:
        return Flag(False, f"{name}={raw}")
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
    return Flag(default, f"{name}={raw!r} not understood; default: {default_reason}")


def is_on(raw: str | None) -> bool:
    """True only for an explicit on-word (``1/true/yes/on``, any case)."""
    return (raw or "").strip().lower() in TRUE_WORDS


def read(name: str) -> str | None:
    """The variable's raw value; None when unset or when the environment cannot be read."""
    try:
        return os.environ.get(name)
    except Exception:  # an unreadable environment must not break the host
        return None


def enabled(default_reason: str = "unset: enabled by the import") -> Flag:
    """Whether the guard may patch in this process."""
    return parse_flag(ENABLE_VAR, read(ENABLE_VAR), True, default_reason)


def row_strided() -> Flag:
    """Whether 2-D row-strided views go to the kernel without a copy (opt-in)."""
    return parse_flag(ROW_STRIDE_VAR, read(ROW_STRIDE_VAR), False, "unset: off")
