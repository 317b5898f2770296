"""Find a target in a live module: the attribute, the guard at or beneath it, its aiter branch,
the kernels it reaches here and what its release checks itself."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from typing import Any

from aiter_norm_guard.guard.registry import guard_of
from aiter_norm_guard.kernels.form import Kernel
from aiter_norm_guard.targets import Target, source_scan
from aiter_norm_guard.targets.fingerprint import fingerprint
from aiter_norm_guard.targets.upstream import Upstream, upstream_of


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


def source_node(fn: Any) -> ast.FunctionDef | None:
    """The syntax tree of ``fn``'s own source (beneath any ``functools.wraps`` wrapper), if readable."""
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn)))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError, ValueError):
        return None
    return node if isinstance(node, ast.FunctionDef) else None


def has_aiter_branch(target: Target, fn: Any, node: ast.FunctionDef | None = None) -> bool:
    """Whether ``fn``'s source reaches the target's aiter bindings (without source: the names its
    code uses, the best evidence left).  A binding target's: aiter's own function, or a wrapper of it."""
    if target.binding and str(getattr(inspect.unwrap(fn), "__module__", "")).split(".")[0] == "aiter":
        return True
    node = node or source_node(fn)
    if node is None:
        code = getattr(inspect.unwrap(fn), "__code__", None)
        return bool(code and set(target.aiter_calls) & set(code.co_names))
    return source_scan.has_aiter_branch(node, target.aiter_calls)


def route(target: Target, module: types.ModuleType) -> tuple[Kernel, ...]:
    """The kernels the entry reaches in this process: a route's when its flag or binding says so."""
    for r in target.routes:
        if r.flag is not None and getattr(module, r.flag, False):
            return r.kernels
        if r.binding is not None and str(getattr(getattr(module, r.binding, None), "__module__", "")).startswith(
            r.prefix
        ):
            return r.kernels
    return target.kernels


def upstream(target: Target, node: ast.FunctionDef | None) -> Upstream | None:
    """What the installed release's entry checks itself, if its fingerprint is a release's."""
    return upstream_of(target.name, fingerprint(node) if node is not None else None)
