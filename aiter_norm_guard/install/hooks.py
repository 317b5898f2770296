"""Post-import hooks: run a callback now if a module is imported, and after every later execution of
it: its first import, ``importlib.reload``, and an import after it was removed from ``sys.modules``.

One mechanism: wrapt's post-import hooks (``wrapt.importer``).  How they work:
``register_post_import_hook(hook, name)`` calls ``hook(module)`` at once if ``name`` is in
``sys.modules``; otherwise it files ``hook`` under ``name`` in ``wrapt.importer._post_import_hooks``.
wrapt's finder, first on ``sys.meta_path``, answers for every name filed there with the spec the
other finders give, its loader chained; after the loader executes the module, wrapt pops the
name's hooks (``notify_module_loaded``) and calls them.  The finder is consulted on an import and
on ``importlib.reload`` (which finds the module's spec again through ``sys.meta_path``), but a
name's hooks are popped when they fire: by themselves they fire once ("it doesn't cope with
modules being reloaded", wrapt's own docstring).

Re-arming: each hook made here files itself again under its name, in wrapt's registry and under
wrapt's lock, each time it fires (before its callback runs).  wrapt's public API cannot do that:
the module is in ``sys.modules`` whenever its hooks run, where ``register_post_import_hook`` calls
the hook at once instead of filing it.  So the next execution of the module goes through wrapt's
finder and fires the hook again.  A hook that raises would fail the host's import, so the callback
is wrapped never to raise (:func:`safe`).

State, in plain sight: ``wrapt.importer._post_import_hooks[name]`` holds the hook between two
executions of ``name``; :data:`_state.WATCHED` says what each name's hook fires on; :func:`state` reports
both for ``status()``.

Limits:

- wrapt not importable: :func:`when_imported` raises ImportError and nothing is hooked.  The
  caller can patch the modules already imported itself; a module imported or reloaded after that
  is not seen.
- The registry and its lock are wrapt's private names (the same, with hooks popped and called
  outside the lock, from 1.14 to 2.5.2, read here).  A wrapt without them (checked at run time):
  the hook fires on the first import only, and :data:`_state.WATCHED` and ``doctor`` say so.
- On a reload wrapt's finder answers with the module's current ``__spec__`` (``importlib.util.find_spec``
  returns it for a module in ``sys.modules``): the module is executed again from the same
  location, its source read afresh.
- A module whose import was already under way (another thread) when its hook was filed is
  handed to the hook at once, maybe half-executed; the hook then fires on its next execution,
  not at the end of that import.
- Hooks are never removed: a callback that should stop acting checks its own switch.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

from aiter_norm_guard import _state
from aiter_norm_guard._log import contained, log_once

Callback = Callable[[types.ModuleType], object]

EVERY_EXECUTION = "import, reload, fresh import"
FIRST_IMPORT = "first import only (this wrapt has no post-import hook registry to re-arm)"

#: Each watched module name and what its hook fires on in this process (EVERY_EXECUTION or FIRST_IMPORT).


def safe(module_name: str, callback: Callback) -> Callable[[types.ModuleType], None]:
    """``callback`` made unable to raise into the import of ``module_name`` (failures log once)."""

    return contained(f"hook-failed:{module_name}", f"post-import hook for {module_name} failed; module left as it was")(
        callback
    )


def _registry(importer: Any) -> tuple[dict[str, list[Any]], Any] | None:
    """wrapt's hook registry and its lock, where this wrapt has them as read here."""
    filed = getattr(importer, "_post_import_hooks", None)
    lock = getattr(importer, "_post_import_hooks_lock", None)
    if isinstance(filed, dict) and hasattr(lock, "__enter__") and hasattr(lock, "__exit__"):
        return filed, lock
    return None


def fires_on(importer: Any) -> str:
    """What a hook made here fires on with this ``wrapt.importer``: EVERY_EXECUTION or FIRST_IMPORT."""
    return EVERY_EXECUTION if _registry(importer) is not None else FIRST_IMPORT


def when_imported(module_name: str, callback: Callback) -> None:
    """Call ``callback(module)`` now if ``module_name`` is imported, and after each later execution of it.

    Raises ImportError when wrapt is missing: the caller decides what that means.
    """
    import wrapt
    from wrapt import importer

    registry = _registry(importer)
    run = safe(module_name, callback)

    def hook(module: types.ModuleType) -> None:
        if registry is not None:  # file it again first: a failing callback still fires next time
            filed, lock = registry
            try:
                with lock:
                    hooks = filed.setdefault(module_name, [])
                    if hook not in hooks:
                        hooks.append(hook)
            except Exception:  # a registry of another shape: first import only, said once
                _state.WATCHED[module_name] = FIRST_IMPORT
                log_once(
                    f"rearm-failed:{module_name}",
                    logging.WARNING,
                    "aiter_norm_guard: cannot re-arm wrapt's hook for %s: a reload of it stays unguarded",
                    module_name,
                    exc_info=True,
                )
        run(module)

    _state.WATCHED[module_name] = fires_on(importer)
    wrapt.register_post_import_hook(hook, module_name)


def state() -> dict[str, Any]:
    """The mechanism and what it covers in this process (for ``status()``)."""
    try:
        import wrapt
        from wrapt import importer
    except Exception as exc:
        return {"mechanism": None, "watched": dict(_state.WATCHED), "error": f"wrapt is not importable: {exc!r}"}
    filed = (_registry(importer) or ({}, None))[0]
    return {
        "mechanism": f"wrapt {getattr(wrapt, '__version__', '?')} post-import hooks",
        "watched": dict(_state.WATCHED),
        "armed": sorted(name for name in _state.WATCHED if filed.get(name)),
    }
