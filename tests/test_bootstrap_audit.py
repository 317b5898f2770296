"""The start-up file executes nothing unless enabled, and opens no file or socket of its own.

An audit hook is installed before ``site`` runs (``python -S``, then ``site.main()``), so
every import, ``open`` and socket event during start-up is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from aiter_norm_guard.bootstrap.startup import startup_file

pytestmark = pytest.mark.skipif(startup_file() is None, reason="start-up file not installed (install the wheel)")

AUDIT = """
import sys, json
events = []
def hook(event, args):
    if event == "import" or event == "open" or event.startswith("socket."):
        events.append([event, str(args[0])])
sys.addaudithook(hook)
import site
site.main()
print(json.dumps(events))
"""


def startup_events(value: str | None) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("AITER_NORM_GUARD", "PYTHONPATH")}
    if value is not None:
        env["AITER_NORM_GUARD"] = value
    proc = subprocess.run([sys.executable, "-S", "-c", AUDIT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ours(events: list[list[str]]) -> list[list[str]]:
    return [e for e in events if "aiter_norm_guard" in e[1] or e[1] in ("wrapt", "torch", "sglang")]


@pytest.mark.parametrize("value", [None, "0", "off"])
def test_disabled_bootstrap_imports_nothing_of_ours(value: str | None) -> None:
    events = startup_events(value)
    assert not [e for e in events if e[0].startswith("socket.")]
    # the only trace of the package: site reading its .pth and .start files
    assert all(e[0] == "open" and e[1].endswith((".pth", ".start")) for e in ours(events)), ours(events)


def test_misspelt_bootstrap_warns_without_importing_the_guard() -> None:
    """AITER_NORM_GUARD=ture: the start-up file says so (logging's last resort), installs nothing."""
    events = startup_events("ture")
    imported = {e[1] for e in events if e[0] == "import"}
    assert "_aiter_norm_guard_startup" in imported
    assert not imported & {"aiter_norm_guard", "wrapt", "torch", "sglang"}


def test_enabled_bootstrap_opens_only_module_files_and_no_socket() -> None:
    events = startup_events("1")
    assert not [e for e in events if e[0].startswith("socket.")]
    imported = {e[1] for e in events if e[0] == "import"}
    assert {"_aiter_norm_guard_startup", "aiter_norm_guard", "wrapt"} <= imported and "torch" not in imported
    opened = [e[1] for e in events if e[0] == "open"]
    not_code = [p for p in opened if not p.endswith((".py", ".pyc", ".pth", ".start", ".so")) and not os.path.isdir(p)]
    assert not [p for p in not_code if "aiter_norm_guard" in p], not_code


def events_summary(events: list[list[str]]) -> Any:
    return sorted({e[0] for e in events})
