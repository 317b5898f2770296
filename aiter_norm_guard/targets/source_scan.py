"""Read sglang's source (``ast``, no import): files, the definitions in them, and an entry's aiter branch.

Used by the patcher (is this release's entry really the aiter one?), by ``doctor`` and by the
readers of call sites and ways of starting.  What a release's entry checks itself is not read
from its statements here but recognised by its fingerprint (:mod:`~aiter_norm_guard.targets.upstream`).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from pathlib import Path

_GATE = "_use_aiter"
ABSENT = "absent"  #: :func:`read`'s answer for a file that is not there
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def parse(text: str) -> ast.Module:
    return ast.parse(text)


def read(path: Path, encoding: str = "utf-8", named: bool = False) -> ast.Module | str:
    """The parsed file, or why not: :data:`ABSENT`, or ``cannot read PATH: ...`` (``named``: errors name the file)."""
    try:
        return ast.parse(path.read_text(encoding=encoding), str(path) if named else "<unknown>")
    except FileNotFoundError:
        return ABSENT
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        return f"cannot read {path}: {type(exc).__name__}: {exc}"


def statements(body: list[ast.stmt], into: Callable[[ast.AST], bool] = lambda node: True) -> Iterator[ast.stmt]:
    """``body``'s statements in order, those under ``if`` / ``try`` (where ``into`` says so) in place of them."""
    for node in body:
        if isinstance(node, (ast.If, ast.Try)) and into(node):
            handlers = [s for h in getattr(node, "handlers", []) for s in h.body]
            yield from statements([*node.body, *node.orelse, *getattr(node, "finalbody", []), *handlers], into)
        else:
            yield node


def lookup(body: list[ast.stmt], dotted: str, kinds: tuple[type, ...] = (ast.FunctionDef,)) -> ast.AST | None:
    """The definition ``Class.name`` or ``name`` of one of ``kinds`` at the top of ``body``."""
    *path, name = dotted.split(".")
    for part in path:
        cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if cls is None:
            return None
        body = cls.body
    return next((n for n in body if isinstance(n, kinds) and getattr(n, "name", None) == name), None)


def find(tree: ast.Module, dotted: str) -> ast.FunctionDef | None:
    """The function ``Class.method`` or ``function`` defined at the top of ``tree``."""
    node = lookup(tree.body, dotted)
    return node if isinstance(node, ast.FunctionDef) else None


def _mentions_gate(test: ast.expr) -> bool | None:
    """True if ``test`` requires the aiter gate, False if it requires it off, None if unrelated."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _mentions_gate(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Name) and test.id == _GATE:
        return True
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        found = [_mentions_gate(v) for v in test.values]
        return True if True in found else (False if False in found else None)
    return None


class _Prune(ast.NodeTransformer):
    """Drop the branches that run only when aiter is not selected."""

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        gate = _mentions_gate(node.test)
        if gate is True:
            node.orelse = []
        elif gate is False:
            node.body = [ast.Pass()]
        return node


def aiter_branch(fn: ast.FunctionDef) -> ast.FunctionDef:
    """``fn`` with the code that runs only without aiter removed."""
    pruned = _Prune().visit(copy.deepcopy(fn))
    assert isinstance(pruned, ast.FunctionDef)
    return pruned


def calls(fn: ast.AST, names: tuple[str, ...]) -> bool:
    """Whether ``fn`` calls one of ``names``: the module's aiter bindings (plain names), or methods of
    an aiter object it holds (``ca_comm.custom_fused_ar_rms``)."""
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id in names)
            or (isinstance(n.func, ast.Attribute) and n.func.attr in names)
        )
        for n in ast.walk(fn)
    )


def has_aiter_branch(fn: ast.FunctionDef, names: tuple[str, ...]) -> bool:
    """Whether ``fn`` reaches one of the aiter bindings ``names`` when aiter is selected."""
    return calls(aiter_branch(fn), names)


def binds(tree: ast.Module, name: str) -> bool:
    """Whether the module binds the global ``name`` at import (an import, a def or an assignment,
    also under ``if`` / ``try``: aiter bindings are made only where aiter is selected)."""
    for node in statements(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def entry_report(tree: ast.Module, attribute: str, names: tuple[str, ...], binding: bool = False) -> dict[str, object]:
    """``present``, ``parameters`` and ``aiter_branch`` of one entry (a ``binding``: a module global
    bound only where aiter is selected, so present means its aiter branch)."""
    if binding:
        bound = binds(tree, attribute)
        return {"present": bound, "parameters": None, "aiter_branch": bound}
    fn = find(tree, attribute)
    if fn is None:
        return {"present": False, "parameters": None, "aiter_branch": False}
    params = [a.arg for a in fn.args.args]
    return {
        "present": True,
        "parameters": params[1:] if "." in attribute else params,
        "aiter_branch": has_aiter_branch(fn, names),
    }
