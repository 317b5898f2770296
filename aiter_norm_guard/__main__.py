"""``python -m aiter_norm_guard``: the command line."""

from aiter_norm_guard.cli import main

raise SystemExit(main())
