"""The signature a guarded entry mirrors, and its text for the generated fast path."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

P = inspect.Parameter
POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)


def takes_any(sig: inspect.Signature) -> bool:
    """Whether ``sig`` takes ``*args``."""
    return any(p.kind is P.VAR_POSITIONAL for p in sig.parameters.values())


def entry_signature(original: Callable[..., Any], wanted: set[str]) -> inspect.Signature:
    """The signature calls must fit: ``original``'s own, not what ``__wrapped__`` says it wraps
    (a third party's narrower wrapper), unless it takes ``*args`` (and ``**kwargs`` where the
    wrapped one has keyword-only parameters) and hides some of the ``wanted`` parameters there."""
    own = inspect.signature(original, follow_wrapped=False)
    if not takes_any(own) or wanted <= set(own.parameters):
        return own
    wrapped = inspect.signature(original)
    kinds = {p.kind for p in own.parameters.values()}
    keyword_only = any(p.kind is p.KEYWORD_ONLY for p in wrapped.parameters.values())
    fits = inspect.Parameter.VAR_KEYWORD in kinds or not keyword_only
    return wrapped if fits and len(wanted & set(wrapped.parameters)) > len(wanted & set(own.parameters)) else own


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
