"""Find a target in a live module: the attribute, the guard at or beneath it, its aiter branch."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from typing import Any

from aiter_norm_guard.patching.registry import guard_of
from aiter_norm_guard.targets import Target, source_scan


def resolve(module: types.ModuleType, dotted: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) for ``Class.method`` or ``function`` in ``module``.

    The attribute must be the owner's own (an inherited method is another entry: KeyError).
    """
    *path, attr = dotted.split(".")
    owner: Any = module
    for part in path:
        owner = getattr(owner, part)
    return owner, attr, vars(owner)[attr]


def find_guard(fn: Any, depth: int = 16) -> tuple[Any, Any]:
    """(the guarded function, its Guard) at ``fn`` or beneath it along ``__wrapped__``."""
    for _ in range(depth):
        g = guard_of(fn)
        if g is not None or fn is None:
            return fn, g
        fn = getattr(fn, "__wrapped__", None)
    return None, None


def describe(fn: Any) -> str:
    """Where a function really comes from (``functools.wraps`` copies names, not code)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return type(fn).__name__
    return f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})"


def has_aiter_branch(target: Target, fn: Any) -> bool:
    """Whether ``fn``'s source reaches the target's aiter bindings (without source: the names its
    code uses, the best evidence left)."""
    inner = inspect.unwrap(fn)
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(inner))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError, ValueError):
        code = getattr(inner, "__code__", None)
        return bool(code and set(target.aiter_calls) & set(code.co_names))
    return isinstance(node, ast.FunctionDef) and source_scan.has_aiter_branch(node, target.aiter_calls)
