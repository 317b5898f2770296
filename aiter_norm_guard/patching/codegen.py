"""Source of a guarded entry's fast path, with the original's exact signature.

Like ``dataclasses`` and ``namedtuple``, the function is written out as Python source and
compiled, so that a call binds its arguments exactly as the original does (forwarding
``*args, **kwargs`` costs ~100 ns more per call) and the common safe case is a handful of
C-level checks.  Only parameter names of the original and attribute names from the target
table (checked to be identifiers) are interpolated; every object the code uses comes from
the namespace it is compiled in (``_original``, ``_slow``, ``_tensor_attr``, defaults).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

P = inspect.Parameter
_POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)


def _ident(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"not an identifier: {name!r}")
    return name


def signature_text(sig: inspect.Signature, namespace: dict[str, Any]) -> tuple[str, str, str]:
    """``(parameters, call to the original, call to the slow path)`` for ``sig``.

    Defaults are bound as names in ``namespace``; positional parameters and ``*args`` are
    passed to the slow path as one tuple, keywords as one dict.
    """
    params, call, values, keywords = [], [], [], []
    items = list(sig.parameters.values())
    last_positional_only = max((i for i, p in enumerate(items) if p.kind is P.POSITIONAL_ONLY), default=-1)
    star = any(p.kind is P.VAR_POSITIONAL for p in items)
    for i, p in enumerate(items):
        name = _ident(p.name)
        default = ""
        if p.default is not P.empty:
            namespace[f"_default_{i}"] = p.default
            default = f"=_default_{i}"
        if p.kind is P.VAR_POSITIONAL:
            params.append(f"*{name}")
            call.append(f"*{name}")
            values.append(f"*{name}")
        elif p.kind is P.VAR_KEYWORD:
            params.append(f"**{name}")
            call.append(f"**{name}")
            keywords.append(f"**{name}")
        elif p.kind is P.KEYWORD_ONLY:
            if not star:
                params.append("*")
                star = True
            params.append(f"{name}{default}")
            call.append(f"{name}={name}")
            keywords.append(f"{name!r}: {name}")
        else:
            params.append(f"{name}{default}")
            call.append(name)
            values.append(name)
        if i == last_positional_only:
            params.append("/")
    value_tuple = f"({', '.join(values)},)" if values else "()"
    keyword_dict = f"{{{', '.join(keywords)}}}" if keywords else "_no_keywords"
    return ", ".join(params), ", ".join(call), f"{value_tuple}, {keyword_dict}"


def weight_lookup(var: str, spec: str, self_name: str | None) -> list[str]:
    """Lines that bind ``var`` to the tensor ``spec`` names (``self.a|self.b`` or a parameter).

    A module tensor is looked up where ``nn.Module`` keeps it, parameters first, then buffers,
    then a plain attribute (``self.weight`` itself would go through ``Module.__getattr__``,
    ~0.5 us): each miss costs one dict lookup.  None if no name is found.
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
    return lines


def fast_path_source(
    name: str,
    sig: inspect.Signature,
    namespace: dict[str, Any],
    x: str,
    like_x: tuple[str, ...],
    weights: tuple[str, ...],
    self_name: str | None,
) -> str:
    """The guarded function: the original at once when every tensor is already kernel-safe.

    Checked per call, cheapest first: ``x`` is 2-D, non-empty and
    contiguous; each weight has ``x``'s last dimension as its length and ``x``'s dtype and is
    contiguous (an expanded weight is read past its storage, a strided one wrongly); each
    ``like_x`` tensor is None or has ``x``'s shape and dtype and is contiguous.  The common
    call without them skips their checks.
    """
    params, call, slow_args = signature_text(sig, namespace)
    x = _ident(x)
    # rank first, without an exception: Dynamo cannot trace a failing unpack (fullgraph breaks)
    body = [f"_s = {x}.shape", "_m, _n = _s if len(_s) == 2 else (0, 0)", f"_dt = {x}.dtype"]
    conds = ["_m", "_n", f"{x}.is_contiguous()"]
    for i, spec in enumerate(weights):
        body += weight_lookup(f"_w{i}", spec, self_name)
        conds += [f"_n == _w{i}.numel()", f"_w{i}.dtype is _dt", f"_w{i}.is_contiguous()"]
    like = [_ident(r) for r in like_x]
    full = conds + [f"({r} is None or ({r}.dtype is _dt and {r}.shape == _s and {r}.is_contiguous()))" for r in like]
    if like:
        body += [
            f"if {' and '.join(f'{r} is None' for r in like)}:",
            f"    _safe = {' and '.join(conds)}",
            "else:",
            f"    _safe = {' and '.join(full)}",
        ]
    else:
        body.append(f"_safe = {' and '.join(conds)}")
    lines = [f"def {_ident(name)}({params}):", "    try:"]
    lines += [f"        {line}" for line in body]
    lines += ["    except Exception:", "        _safe = False"]
    lines += ["    if _safe:", f"        return _original({call})", f"    return _slow({slow_args})", ""]
    return "\n".join(lines)


def compile_function(source: str, namespace: dict[str, Any], name: str, filename: str) -> Callable[..., Any]:
    """Compile ``source`` in ``namespace`` and return the function ``name`` it defines."""
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]
