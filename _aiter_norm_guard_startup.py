"""Entry points of aiter_norm_guard that must stay light: interpreter start-up and sglang's plugin.

Read from a ``.pth`` line or a PEP 829 ``.start`` file at interpreter start, and named
in the ``sglang.srt.plugins`` entry-point group.  Imports only ``os`` unless the guard
is to be activated; never raises.
"""

import os

#: The entry point importing the package right now, so it can record how it arrived.
entering = None


def _enter(source: str) -> None:
    global entering
    entering = source
    try:
        import aiter_norm_guard.api

        aiter_norm_guard.api.activate(source)  # records the source if the package was already imported
    except Exception:  # an entry point must never stop the host
        pass
    finally:
        entering = None


def run() -> None:
    """Start-up hook: install the guard in this process if ``AITER_NORM_GUARD`` is on."""
    if os.environ.get("AITER_NORM_GUARD", "").strip().lower() in ("1", "true", "yes", "on"):
        _enter("env-bootstrap")


def sglang_plugin() -> None:
    """sglang (>= 0.5.11) general plugin: install the guard unless ``AITER_NORM_GUARD`` is off."""
    _enter("sglang-plugin")
