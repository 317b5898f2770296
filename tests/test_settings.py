"""The switch: parsed once per event, written only for children, never mistaken for the user's."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from aiter_norm_guard import _state
from aiter_norm_guard.bootstrap import settings
from conftest import run_python


def test_read_never_returns_the_guards_own_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENABLE_VAR, raising=False)
    monkeypatch.setattr(_state, "WRITTEN_ENV", {})
    settings.enable_for_children()
    assert os.environ[settings.ENABLE_VAR] == "1"
    assert settings.read(settings.ENABLE_VAR) is None  # the user set nothing
    assert settings.enabled().reason.startswith("unset")
    settings.restore_for_children()
    assert settings.ENABLE_VAR not in os.environ


@pytest.mark.parametrize("value", ["1", "on", "0", "OFF", "disable", "ture"])
def test_an_explicit_value_is_never_overwritten(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.ENABLE_VAR, value)
    monkeypatch.setattr(_state, "WRITTEN_ENV", {})
    settings.enable_for_children()
    settings.restore_for_children()
    assert os.environ[settings.ENABLE_VAR] == value and settings.read(settings.ENABLE_VAR) == value


def test_an_empty_value_is_written_and_given_back_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.ENABLE_VAR, " ")
    monkeypatch.setattr(_state, "WRITTEN_ENV", {})
    settings.enable_for_children()
    assert os.environ[settings.ENABLE_VAR] == "1"
    settings.restore_for_children()
    assert os.environ[settings.ENABLE_VAR] == " "


def test_a_misspelt_off_reaches_children_as_the_user_wrote_it() -> None:
    """AITER_NORM_GUARD=disable: unset with a warning in this process, never 1 for its children."""
    code = """
import os, subprocess, sys, aiter_norm_guard
child = "import os, sys; print(os.environ['AITER_NORM_GUARD'], 'aiter_norm_guard' in sys.modules)"
print(subprocess.run([sys.executable, "-P", "-c", child], capture_output=True, text=True).stdout.strip())
"""
    proc = run_python(code, {"AITER_NORM_GUARD": "disable"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "disable False"


def test_restore_leaves_a_value_someone_else_set_since(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.ENABLE_VAR, raising=False)
    monkeypatch.setattr(_state, "WRITTEN_ENV", {})
    settings.enable_for_children()
    os.environ[settings.ENABLE_VAR] = "0"  # the user changed their mind
    settings.restore_for_children()
    assert os.environ[settings.ENABLE_VAR] == "0"


def test_unknown_values_warn_once_naming_the_accepted_ones(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(_state, "LOGGED", set())
    with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
        for _ in range(3):
            flag = settings.parse_flag(settings.ENABLE_VAR, "ture", True, "unset")
    assert flag.value is True and "not understood" in flag.reason
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "'ture'" in msgs[0] and "1/true/yes/on" in msgs[0] and "0/false/no/off" in msgs[0]


def test_unreadable_environment_falls_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreadable(dict):  # type: ignore[type-arg]
        def get(self, *a: Any, **k: Any) -> Any:
            raise OSError("environment unreadable")

    monkeypatch.setattr(os, "environ", Unreadable())
    assert settings.enabled().value is True
    assert settings.row_strided().value is False
    settings.enable_for_children()  # never raises either


def test_status_reason_is_the_users_setting_after_install() -> None:
    code = """
import json, aiter_norm_guard
aiter_norm_guard.install()
st = aiter_norm_guard.status()
print(json.dumps({"reason": st["reason"], "env": st["children"]["env"]}))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["reason"].startswith("unset") and result["env"] == "1"
