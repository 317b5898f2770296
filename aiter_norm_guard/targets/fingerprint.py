"""A function's fingerprint: a digest of its syntax tree, stable across Python versions and formatting.

Used to recognise a release's entry exactly (``upstream``): two sources with the same
statements, names and constants have the same fingerprint; comments, blank lines, line
numbers and ``ast.dump``'s version-dependent defaults play no part.  Docstrings do not
either: they change nothing the code does.
"""

from __future__ import annotations

import ast
import hashlib

_SKIP = frozenset({"ctx", "type_comment", "type_params", "kind"})


def _walk(node: object, out: list[str]) -> None:
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for field in node._fields:
            if field not in _SKIP:
                out.append(field + "=")
                _walk(getattr(node, field, None), out)
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _walk(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(repr(node))


def fingerprint(fn: ast.FunctionDef) -> str:
    """16 hex digits identifying ``fn``'s name, arguments, decorators and statements."""
    out: list[str] = [fn.name]
    _walk(fn.args, out)
    _walk(fn.decorator_list, out)
    _walk(fn.body[1:] if ast.get_docstring(fn, clean=False) is not None else fn.body, out)
    return hashlib.sha256("".join(out).encode()).hexdigest()[:16]
