"""Source of a guarded entry's fast path, with the original's exact signature.

Like ``dataclasses`` and ``namedtuple``, the function is written out as Python source and
compiled, so that a call binds its arguments exactly as the original does and the common
safe case is a handful of C-level checks: only those its per-call
:class:`~aiter_norm_guard.kernels.needs.Checks` name (the kernels' needs less what the release
already does itself).  Every group (a rows tensor and its vectors: x first; the others optional,
None passes) is checked with its own width, the row tensors (a residual) against x's shape.  Only
parameter names of the original and attribute names from the target table (checked to be
identifiers) are interpolated; every object the code uses comes from the namespace it is compiled in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from aiter_norm_guard.guard.signature import _ident, signature_text
from aiter_norm_guard.kernels.needs import X_CONTIGUOUS, X_POSITIVE, X_ROWS, X_UNIT_LAST, ZERO_ROWS, Checks
from aiter_norm_guard.targets.declaration import Attr, Param

Group = tuple[str, Sequence[Param | Attr]]


def weight_lookup(var: str, spec: Param | Attr, self_name: str | None) -> list[str]:
    """Lines that bind ``var`` to the tensor ``spec`` names (a parameter, or the module's attribute).

    A module tensor is looked up where ``nn.Module`` keeps it, parameters first, then buffers,
    then a plain attribute (``self.weight`` itself would go through ``Module.__getattr__``,
    ~0.5 us): each miss costs one dict lookup.  Only where every store misses (a parametrized
    weight, a property), the attribute itself, as the release reads it.  None if no name is found.
    """
    if isinstance(spec, Param):
        return [f"{var} = {_ident(spec.name)}"]
    if self_name is None:
        raise ValueError(f"{spec!r} needs a method (the entry has no self)")
    lines: list[str] = []
    indent = ""
    for i, name in enumerate(_ident(n) for n in spec.names):
        for j, store in enumerate(("_parameters", "_buffers", "__dict__")):
            if i or j:
                lines.append(f"{indent}if {var} is None:")
                indent += "    "
            lines.append(f"{indent}{var} = {self_name}.{store}.get({name!r})")
    for name in (_ident(n) for n in spec.names):
        lines += [f"{indent}if {var} is None:", f"{indent}    {var} = getattr({self_name}, {name!r}, None)"]
        indent += "    "
    return lines


def _layout(t: str, mode: str, row_strided: bool = False, contiguous_first: bool = False) -> list[str]:
    """``t``'s own layout under ``mode`` (``row_strided``: rows through stride(0) too; reads ``_n``).
    ``contiguous_first``: the common case is contiguous, which ``is_contiguous()`` (~60 ns) answers
    before ``stride()`` (~120 ns) is read."""
    if mode == X_ROWS:
        strided = f" or ({t}.stride(1) == 1 and {t}.stride(0) >= _n)" if row_strided else ""
        return [f"({t}.is_contiguous(){strided})" if strided else f"{t}.is_contiguous()"]
    if mode == X_UNIT_LAST:
        return [f"({t}.is_contiguous() or {t}.stride()[-1] == 1)" if contiguous_first else f"{t}.stride()[-1] == 1"]
    if mode == X_CONTIGUOUS:
        return [f"{t}.is_contiguous()"]
    return [f"0 not in {t}.stride()"] if mode == X_POSITIVE else []


def _x_conditions(x: str, c: Checks, hidden: str | None) -> list[str]:
    """``x``'s shape, layout, emptiness and hidden size; binds ``_n`` (the hidden size the kernel reads)."""
    out = ["len(_s) == 2", "(_n := _s[1])"] if c.rank2 else ["_s", "(_n := _s[-1])"]
    if hidden is not None:
        out.append(f"_n == {hidden}")
    out += _layout(x, c.x, c.row_strided, contiguous_first=c.reshape)  # one group: x is mostly contiguous
    if c.nonempty and ZERO_ROWS not in c.exits:
        out.append("_s[0]" if c.rank2 else "0 not in _s")
    elif c.nonempty and not c.rank2:  # the release returns early when shape[0] == 0
        out.append("(0 not in _s or not _s[0])")
    if c.host_x:
        out.append(f"{x}.is_cuda")
    return out


def _vectors(group: int, t: str, n: str, count: int, c: Checks) -> list[str]:
    out = []
    for j in range(count):
        w = f"_w{group}_{j}"
        out.append(f"{w}.numel() == {n}")
        if c.weight_dtype:
            out.append(f"{w}.dtype is {'_dt' if group == 0 else f'{t}.dtype'}")
        if c.weight_stride:
            out.append(f"{w}.is_contiguous()")
        if c.host_others:
            out.append(f"{w}.is_cuda")
    return out


def _conditions(
    groups: Sequence[Group], c: Checks, rows: Sequence[str], summed: Sequence[str], hidden: str | None
) -> list[str]:
    x = groups[0][0]
    out = _x_conditions(x, c, hidden) + _vectors(0, x, "_n", len(groups[0][1]), c)
    for i, (t, vectors) in enumerate(groups[1:], 1):
        test = [f"len(_s{i} := {t}.shape) == 2"] + ([f"_s{i}[0] == _s[0]"] if c.same_rows else [])
        test += [f"{t}.is_cuda"] if c.host_others else []
        test += _layout(t, c.x) + _vectors(i, t, f"_s{i}[1]", len(vectors), c)
        out.append(f"({t} is None or ({' and '.join(test)}))")
    for r in rows:
        if c.same_rows:
            out += ([f"{r}.dtype is _dt"] if c.rows_dtype else []) + [f"{r}.shape == _s"]
        out += _layout(r, c.rows) + ([f"{r}.is_cuda"] if c.host_others else [])
    out += [f"({p} is None or ({p}.dtype is _dt and {p}.shape == _s))" for p in summed]
    return out


def fast_path_source(
    name: str,
    sig: inspect.Signature,
    namespace: dict[str, Any],
    groups: Sequence[Group],
    self_name: str | None,
    alone: Checks,
    rows: tuple[str, ...] = (),
    summed: tuple[str, ...] = (),
    with_rows: Checks | None = None,
    hidden: str | None = None,
    lean: str | None = None,
) -> str:
    """The guarded function: the original at once when every check of ``alone`` (no row tensor given) or
    ``with_rows`` (some given) holds, else the slow path.  ``hidden``: the name of the module attribute the
    entry reshapes ``x`` to, if not ``x``'s last dimension.  With ``lean`` (a condition, e.g. no pad path),
    a call without row tensors whose only fault is ``x``'s layout under X_ROWS is fixed inline (a view or
    one copy; ``_record(copied)`` counts it)."""
    params, call, slow_args = signature_text(sig, namespace)
    groups = [(_ident(t), vectors) for t, vectors in groups]
    x = groups[0][0]
    rows, summed = tuple(_ident(r) for r in rows), tuple(_ident(p) for p in summed)
    if hidden is not None:
        hidden = f"{self_name}.__dict__.get({_ident(hidden)!r})"
    body = [f"_s = {x}.shape"]
    for i, (_, vectors) in enumerate(groups):
        for j, spec in enumerate(vectors):
            body += weight_lookup(f"_w{i}_{j}", spec, self_name)
    lean = lean if lean is not None and alone.x == X_ROWS and alone.rank2 else None

    def branch(checks: Checks, with_rows: tuple[str, ...], with_summed: tuple[str, ...]) -> list[str]:
        if lean is not None and not with_rows:  # everything but x's layout first, then the layout
            test = " and ".join(_conditions(groups, checks._replace(x="", rank2=False), (), (), hidden))
            lines = [
                f"_ok = {test}",
                f"_safe = _ok and len(_s) == 2 and {_layout(x, checks.x, checks.row_strided)[0]}",
                f"_rows = _ok and not _safe{lean}",
            ]
        else:
            lines = [f"_safe = {' and '.join(_conditions(groups, checks, with_rows, with_summed, hidden))}"]
        return ([f"_dt = {x}.dtype"] if "_dt" in " ".join(lines) else []) + lines

    if rows:
        body += [f"if {' and '.join(f'{r} is None' for r in rows)}:"]
        body += [f"    {line}" for line in branch(alone, (), ())] + ["else:"]
        body += [f"    {line}" for line in branch(with_rows or alone, rows, summed)]
    else:
        body += branch(alone, (), ())
    lines = [f"def {_ident(name)}({params}):"] + (["    _rows = False"] if lean is not None else []) + ["    try:"]
    lines += [f"        {line}" for line in body]
    lines += ["    except Exception:", "        _safe = False"]
    lines += ["    if _safe:", f"        return _original({call})"]
    if lean is not None:  # the caller's x as rows: a view if contiguous, else one copy; the result back in its shape
        call_x = ", ".join("_x" if part == x else part for part in call.split(", "))
        lines += [
            "    if _rows:",
            f"        _c = {x}.is_contiguous()",
            f"        _x = {x}.view(-1, _n) if _c else {x}.contiguous().view(-1, _n)",
            "        _record(_c)",
            f"        _r = _original({call_x})",
            "        return _r.view(_s) if len(_s) != 2 and _r.shape == _x.shape else _r",
        ]
    lines += [f"    return _slow({slow_args})", ""]
    return "\n".join(lines)


def compile_function(source: str, namespace: dict[str, Any], name: str, filename: str) -> Callable[..., Any]:
    """Compile ``source`` in ``namespace`` and return the function ``name`` it defines."""
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]
