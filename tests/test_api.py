"""The public API never raises into the app: status() is read section by section, install() and
uninstall() report what failed instead of raising it."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import pytest

import aiter_norm_guard
from aiter_norm_guard import _state
from aiter_norm_guard.bootstrap import api, startup
from aiter_norm_guard.guard import interventions
from aiter_norm_guard.install.patcher import PATCHER

#: The public calls that return a status, in an order that installs, uninstalls and installs again.
CALLS = (aiter_norm_guard.status, aiter_norm_guard.install, aiter_norm_guard.uninstall, aiter_norm_guard.install)


def boom(*a: Any, **k: Any) -> Any:
    raise RuntimeError("injected")


@pytest.mark.parametrize(
    ("owner", "attr", "key"),
    [
        (api, "sglang_info", "sglang"),
        (PATCHER, "report", "targets"),
        (startup, "children_inherit", "children"),
        (interventions, "snapshot", "interventions"),
        (api, "_flag", "enabled"),
    ],
)
def test_a_failing_section_is_an_error_string_logged_once(
    owner: Any, attr: str, key: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_state, "LOGGED", set())
    monkeypatch.setattr(owner, attr, boom)
    with caplog.at_level(logging.WARNING, logger="aiter_norm_guard"):
        for call in CALLS:
            st = call()
    section = key if key != "enabled" else "switch"
    assert f"status could not read {section}: RuntimeError: injected" in st["error"]
    assert key in st and st["installed"] is True
    lines = [r.getMessage() for r in caplog.records if "status could not read" in r.getMessage()]
    assert len(lines) == 1


def test_unreadable_sglang_metadata_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sglang dist-info whose METADATA is not UTF-8 (a Latin-1 author) made status() raise UnicodeDecodeError."""

    def latin1(name: str) -> Any:
        raise UnicodeDecodeError("utf-8", b"Jos\xe9", 3, 4, "invalid continuation byte")

    monkeypatch.setattr(importlib.metadata, "distribution", latin1)
    info = api.sglang_info()
    assert info["installed"] is None and info["error"].startswith("cannot read sglang's package metadata: Unicode")
    for call in CALLS:
        st = call()
        assert st["sglang"]["installed"] is None and "cannot read sglang's package metadata" in st["error"]
