"""Write the call-site table into README.md (between its ``callsites`` markers) from targets/callsites.py.

python -P scripts/readme_callsites.py        (tests/test_callsites.py checks the README shows it)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AITER_NORM_GUARD", "0")  # reading the table installs nothing

from aiter_norm_guard.targets.callsites import markdown  # noqa: E402

readme = ROOT / "README.md"
text = readme.read_text(encoding="utf-8")
begin, end = "<!-- callsites:begin -->\n", "<!-- callsites:end -->"
head, rest = text.split(begin, 1)
readme.write_text(head + begin + markdown() + end + rest.split(end, 1)[1], encoding="utf-8")
