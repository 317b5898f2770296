"""Source of a guarded entry's fast path, with the original's exact signature.

Like ``dataclasses`` and ``namedtuple``, the function is written out as Python source and
compiled, so that a call binds its arguments exactly as the original does and the common
safe case is a handful of C-level checks: only those :class:`Checks` names, which the guard
derives from the kernel contract less what the release already does itself.  Only parameter
names of the original and attribute names from the target table (checked to be identifiers)
are interpolated; every object the code uses comes from the namespace it is compiled in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from aiter_norm_guard.guard.signature import _ident, signature_text

#: How ``x``'s own layout is checked (``Checks.x``).
X_ROWS = "rows"  # 2-D and contiguous (or row-strided where allowed)
X_RANK2 = "rank 2"  # 2-D (the release makes a 2-D x contiguous itself)
X_CONTIGUOUS = "contiguous"  # any rank, contiguous
X_ANY = ""  # the release (or the kernel) takes any layout
#: How empty inputs are checked (``Checks.zero``).
ZERO_ALL = "all"
ZERO_PAST_FIRST = "past the first dimension"  # the release returns early when shape[0] == 0
ZERO_NONE = ""


class Checks(NamedTuple):
    """What the fast path verifies for one kind of call (without, or with, the row tensors)."""

    x: str = X_ROWS
    row_strided: bool = False
    zero: str = ZERO_ALL
    weight_dtype: bool = True
    weight_stride: bool = True
    host_x: bool = False
    host_others: bool = False
    rows_like: bool = True  # row tensors: x's shape and dtype
    rows_contiguous: bool = True
    summed_like: bool = True  # summed tensors: x's shape and dtype (their sum then keeps the row's layout)
    lean_rows: bool = False  # x's layout alone is wrong: fix it inline (a view or one copy), no slow path


def weight_lookup(var: str, spec: str, self_name: str | None) -> list[str]:
    """Lines that bind ``var`` to the tensor ``spec`` names (``self.a|self.b`` or a parameter).

    A module tensor is looked up where ``nn.Module`` keeps it, parameters first, then buffers,
    then a plain attribute (``self.weight`` itself would go through ``Module.__getattr__``,
    ~0.5 us): each miss costs one dict lookup.  Only where every store misses (a parametrized
    weight, a property), the attribute itself, as the release reads it.  None if no name is found.
    """
    if not spec.startswith("self."):
        return [f"{var} = {_ident(spec)}"]
    if self_name is None:
        raise ValueError(f"{spec!r} needs a method (the entry has no self)")
    lines: list[str] = []
    indent = ""
    for i, part in enumerate(spec.split("|")):
        name = _ident(part.split(".", 1)[1])
        for j, store in enumerate(("_parameters", "_buffers", "__dict__")):
            if i or j:
                lines.append(f"{indent}if {var} is None:")
                indent += "    "
            lines.append(f"{indent}{var} = {self_name}.{store}.get({name!r})")
    for part in spec.split("|"):
        name = _ident(part.split(".", 1)[1])
        lines += [f"{indent}if {var} is None:", f"{indent}    {var} = getattr({self_name}, {name!r}, None)"]
        indent += "    "
    return lines


def _x_conditions(x: str, c: Checks, hidden: str | None) -> list[str]:
    """``x``'s layout, emptiness and hidden size; binds ``_n`` (the hidden size the kernel reads)."""
    two_d = c.x in (X_ROWS, X_RANK2)
    out = ["len(_s) == 2", "(_n := _s[1])"] if two_d else ["_s", "(_n := _s[-1])"]
    if hidden is not None:
        out.append(f"_n == {hidden}")
    if c.x == X_ROWS:
        strided = f" or ({x}.stride(1) == 1 and {x}.stride(0) >= _n)" if c.row_strided else ""
        out.append(f"({x}.is_contiguous(){strided})" if strided else f"{x}.is_contiguous()")
    elif c.x == X_CONTIGUOUS:
        out.append(f"{x}.is_contiguous()")
    if c.zero == ZERO_ALL:
        out.append("_s[0]" if two_d else "0 not in _s")
    elif c.zero == ZERO_PAST_FIRST and not two_d:
        out.append("(0 not in _s or not _s[0])")
    if c.host_x:
        out.append(f"{x}.is_cuda")
    return out


def _conditions(
    x: str, c: Checks, n_weights: int, rows: tuple[str, ...], summed: tuple[str, ...], hidden: str | None
) -> list[str]:
    out = _x_conditions(x, c, hidden)
    for i in range(n_weights):
        out.append(f"_w{i}.numel() == _n")
        if c.weight_dtype:
            out.append(f"_w{i}.dtype is _dt")
        if c.weight_stride:
            out.append(f"_w{i}.is_contiguous()")
        if c.host_others:
            out.append(f"_w{i}.is_cuda")
    for r in rows:
        if c.rows_like:
            out += [f"{r}.dtype is _dt", f"{r}.shape == _s"]
        if c.rows_contiguous:
            out.append(f"{r}.is_contiguous()")
        if c.host_others:
            out.append(f"{r}.is_cuda")
    for p in summed:
        if c.summed_like:
            out.append(f"({p} is None or ({p}.dtype is _dt and {p}.shape == _s))")
    return out


def fast_path_source(
    name: str,
    sig: inspect.Signature,
    namespace: dict[str, Any],
    x: str,
    weights: tuple[str, ...],
    self_name: str | None,
    alone: Checks,
    rows: tuple[str, ...] = (),
    summed: tuple[str, ...] = (),
    with_rows: Checks | None = None,
    hidden: str | None = None,
    lean_guard: str = "",
) -> str:
    """The guarded function: the original at once when every check of ``alone`` (no row tensor
    given) or ``with_rows`` (some given) holds, else the slow path.  ``hidden``: the name of the
    module attribute the entry reshapes ``x`` to, if not ``x``'s last dimension.  With
    ``alone.lean_rows``, a call whose only fault is ``x``'s layout is fixed inline (``_record(copied)``
    counts it) when ``lean_guard`` (a condition on the module, e.g. no pad path) also holds."""
    params, call, slow_args = signature_text(sig, namespace)
    x = _ident(x)
    rows = tuple(_ident(r) for r in rows)
    summed = tuple(_ident(p) for p in summed)
    if hidden is not None:
        hidden = f"{self_name}.__dict__.get({_ident(hidden)!r})"
    body = [f"_s = {x}.shape"]
    for i, spec in enumerate(weights):
        body += weight_lookup(f"_w{i}", spec, self_name)

    def branch(checks: Checks, with_rows: tuple[str, ...], with_summed: tuple[str, ...]) -> list[str]:
        if checks.lean_rows and checks.x == X_ROWS:  # everything but x's layout first, then the layout
            test = " and ".join(_conditions(x, checks._replace(x=X_ANY), len(weights), (), (), hidden))
            layout = _x_conditions(x, checks, None)[2]
            lines = [
                f"_ok = {test}",
                f"_safe = _ok and len(_s) == 2 and {layout}",
                f"_rows = _ok and not _safe{lean_guard}",
            ]
        else:
            test = " and ".join(_conditions(x, checks, len(weights), with_rows, with_summed, hidden))
            lines = [f"_safe = {test}"]
        return ([f"_dt = {x}.dtype"] if "_dt" in " ".join(lines) else []) + lines

    if rows:
        body += [f"if {' and '.join(f'{r} is None' for r in rows)}:"]
        body += [f"    {line}" for line in branch(alone, (), ())] + ["else:"]
        body += [f"    {line}" for line in branch(with_rows or alone, rows, summed)]
    else:
        body += branch(alone, (), ())
    lean = alone.lean_rows and alone.x == X_ROWS
    lines = [f"def {_ident(name)}({params}):"] + (["    _rows = False"] if lean else []) + ["    try:"]
    lines += [f"        {line}" for line in body]
    lines += ["    except Exception:", "        _safe = False"]
    lines += ["    if _safe:", f"        return _original({call})"]
    if lean:  # the caller's x as rows: a view if contiguous, else one copy; the result back in its shape
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
