"""This process's state, every holder of it in one place: what the guard has done and seen here.

Each holder is written only by the module named beside it; everything else reads it (``status()``,
``doctor``, the tests).  The install record itself is ``install.patcher.PATCHER`` (the undo record is
the state: each patched attribute, what it held before, what it holds now).  A forked child keeps
every holder: the patches it inherited are real in it; the locks guarding them are made anew there
(:mod:`aiter_norm_guard._fork`), and the child logs its own firsts again (``_log.forget``).
"""

from __future__ import annotations

from typing import Any

LOGGED: set[str] = set()  # _log: the events already logged once
GUARDS: dict[int, tuple[Any, Any]] = {}  # guard.registry: id(function) -> (weak reference to it, its guard)
COUNTS: dict[tuple[str, str, str], int] = {}  # guard.interventions: (entry, reason, mode) -> calls changed
COUNTER: list[Any] = []  # guard.interventions: [the Prometheus counter] once made, [None] where none can be
TRACED_OP: list[Any] = []  # guard.interventions: [the counting op] once made, [None] where torch cannot make one
OP_LIBRARIES: list[Any] = []  # guard.interventions: keeps the counting op's library alive
DIRECT_STORES: dict[type, bool] = {}  # guard.cache_write: pool type -> stores K / V where the kernel writes them
WRITTEN_ENV: dict[str, tuple[str | None, str]] = {}  # bootstrap.settings: variable -> (value before, ours)
SOURCES: list[str] = []  # bootstrap.api: how the guard came into this process (import, plugin, pth, api, cli)
LAST_FLAG: list[Any] = []  # bootstrap.api: [the switch as the last activation read it]
WATCHED: dict[str, str] = {}  # install.hooks: module name -> what its import hook fires on
