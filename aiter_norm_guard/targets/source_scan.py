"""Read an entry's source (``ast``, no import): does it have its aiter branch, and which checks.

Used by the patcher (is this release's entry really the aiter one?) and by ``doctor``
(what does upstream already check, so what does the guard add).  The checks are found by
the statements sglang wrote for them; a source that says nothing returns nothing.
"""

from __future__ import annotations

import ast
import copy
import re

#: Upstream checks, as the statements sglang wrote them (matched on the unparsed aiter branch).
CHECKS: dict[str, tuple[str, ...]] = {
    "x rows": (r"\bx\s*=\s*x\.contiguous\(\)\.reshape\(-1",),
    "x contiguous": (r"\bx\s*=\s*x\.contiguous\(\)",),
    "residual rows": (r"\bresidual\s*=\s*residual\.contiguous\(\)",),
    "zero rows": (r"\b(x|hidden_states)\.shape\[0\]\s*==\s*0", r"\b(x|hidden_states)\.numel\(\)\s*==\s*0"),
    "weight dtype": (r"weight(\.data)?\.dtype\s*!=\s*x\.dtype", r"x\.dtype\s*!=\s*self\.weight(\.data)?\.dtype"),
    "CPU tensors to native": (r"not\s+x\.is_cuda",),
    "x reshaped (strided views kept)": (r"\bx\s*=\s*x\.reshape\(-1",),
}

_GATE = "_use_aiter"


def parse(text: str) -> ast.Module:
    return ast.parse(text)


def find(tree: ast.Module, dotted: str) -> ast.FunctionDef | None:
    """The function ``Class.method`` or ``function`` defined at the top of ``tree``."""
    *path, name = dotted.split(".")
    body: list[ast.stmt] = tree.body
    for part in path:
        cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if cls is None:
            return None
        body = cls.body
    return next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == name), None)


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
        and ((isinstance(n.func, ast.Name) and n.func.id in names)
             or (isinstance(n.func, ast.Attribute) and n.func.attr in names))
        for n in ast.walk(fn)
    )


def has_aiter_branch(fn: ast.FunctionDef, names: tuple[str, ...]) -> bool:
    """Whether ``fn`` reaches one of the aiter bindings ``names`` when aiter is selected."""
    return calls(aiter_branch(fn), names)


def checks(fn: ast.FunctionDef) -> list[str]:
    """The upstream checks found in ``fn``'s aiter branch (see :data:`CHECKS`)."""
    text = ast.unparse(aiter_branch(fn))
    return [name for name, patterns in CHECKS.items() if any(re.search(p, text) for p in patterns)]


def entry_report(tree: ast.Module, attribute: str, names: tuple[str, ...]) -> dict[str, object]:
    """``present``, ``parameters``, ``aiter_branch`` and upstream ``checks`` of one entry."""
    fn = find(tree, attribute)
    if fn is None:
        return {"present": False, "parameters": None, "aiter_branch": False, "checks": []}
    params = [a.arg for a in fn.args.args]
    return {
        "present": True,
        "parameters": params[1:] if "." in attribute else params,
        "aiter_branch": has_aiter_branch(fn, names),
        "checks": checks(fn),
    }
