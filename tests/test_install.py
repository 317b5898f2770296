"""The package under test is the one a user gets: installed from the built wheel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aiter_norm_guard
from aiter_norm_guard.bootstrap.startup import PTH_NAME, START_NAME, startup_file


@pytest.mark.skipif(os.environ.get("AITER_NORM_GUARD_EXPECT_WHEEL") != "1", reason="not run from the built wheel")
def test_package_comes_from_site_packages_with_its_startup_files() -> None:
    assert "site-packages" in aiter_norm_guard.__file__
    pth = startup_file()
    assert pth is not None and Path(pth).name == PTH_NAME
    assert (Path(pth).parent / START_NAME).read_text().strip() == "_aiter_norm_guard_startup:run"
    line = Path(pth).read_text().strip()
    assert line.startswith("import os;") and '__import__("_aiter_norm_guard_startup").run()' in line
    assert '("", "0", "false", "no", "off")' in line  # anything but an off-word reaches run(): on, or a warning
