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


def test_wheel_venv_is_made_by_the_base_venvs_own_interpreter() -> None:
    """Its .pth reaches the base venv's site-packages: only the same Python version can use them, so the
    script must not take whatever ``python3`` is on PATH (setup.sh honours $PYTHON)."""
    repo = Path(__file__).resolve().parent.parent
    venv_lines = [ln for ln in (repo / "scripts" / "wheel-venv.sh").read_text().splitlines() if "-m venv" in ln]
    assert venv_lines and all(".venv/bin/python" in ln and "_base_executable" in ln for ln in venv_lines)
    if os.environ.get("AITER_NORM_GUARD_EXPECT_WHEEL") == "1":
        import subprocess
        import sys

        base = subprocess.run(
            [str(repo / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert base == str(sys.version_info[:2])
