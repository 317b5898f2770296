"""Entry points of aiter_norm_guard that must stay light: interpreter start-up, sglang's plugin, the CLI.

Read from a ``.pth`` line or a PEP 829 ``.start`` file at interpreter start, named in the
``sglang.srt.plugins`` entry-point group, and the ``aiter-norm-guard`` console script.
Imports only ``os`` unless the guard is to be activated or the switch is misspelt; never
raises into the host.
"""

import os

#: The entry point importing the package right now, so it can record how it arrived.
entering = None
#: Values of AITER_NORM_GUARD this process has already warned about at start-up.
warned: set = set()

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def _enter(source):
    global entering
    entering = source
    try:
        import aiter_norm_guard.bootstrap.api

        return aiter_norm_guard.bootstrap.api.activate(source)  # records the source if the package was already imported
    except Exception:  # an entry point must never stop the host
        return False
    finally:
        entering = None


def _warn_unknown(raw):
    """A misspelt switch: say so on stderr (logging's last resort) without importing the guard."""
    if raw in warned:  # some interpreters read the same site directory twice
        return
    try:
        import logging

        warned.add(raw)
        logging.getLogger("aiter_norm_guard").warning(
            "aiter_norm_guard: AITER_NORM_GUARD=%r not understood; accepted values are 1/true/yes/on (on) or "
            "0/false/no/off (off). Treated as unset: not installed at start-up, but installed where "
            "aiter_norm_guard is imported or loaded as sglang's plugin",
            raw,
        )
    except Exception:
        pass


def run():
    """Start-up hook: install the guard if ``AITER_NORM_GUARD`` is on; warn if it is misspelt."""
    raw = os.environ.get("AITER_NORM_GUARD", "")
    word = raw.strip().lower()
    if word in _ON:
        _enter("env-bootstrap")
    elif word not in _OFF:
        _warn_unknown(raw)


def sglang_plugin():
    """sglang (>= 0.5.11) general plugin: install the guard unless ``AITER_NORM_GUARD`` is off."""
    _enter("sglang-plugin")


def cli():
    """The ``aiter-norm-guard`` console script: the CLI decides what to install, not the import."""
    global entering
    entering = "cli"
    try:
        from aiter_norm_guard.cli import main
    finally:
        entering = None
    raise SystemExit(main())
