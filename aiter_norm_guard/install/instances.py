"""Rebind methods already bound on live instances (modules built before the guard)."""

from __future__ import annotations

import gc
import types
from collections.abc import Callable, Iterator
from typing import Any


def _classes(cls: type) -> Iterator[type]:
    yield cls
    sub: type
    for sub in type.__subclasses__(cls):
        yield from _classes(sub)


def live_instances(cls: type) -> Iterator[Any]:
    """Every live object whose type is ``cls`` or a subclass of it."""
    for klass in set(_classes(cls)):
        for obj in gc.get_referrers(klass):
            if type(obj) is klass:
                yield obj


def rebind(cls: type, attrs: tuple[str, ...], old: Callable[..., Any], new: Callable[..., Any]) -> int:
    """Where an instance attribute holds ``old`` bound to that instance, bind ``new`` instead.

    Returns how many attributes were rebound.
    """
    count = 0
    for obj in live_instances(cls):
        d = getattr(obj, "__dict__", None)
        if d is None:
            continue
        for attr in attrs:
            bound = d.get(attr)
            if isinstance(bound, types.MethodType) and bound.__self__ is obj and bound.__func__ is old:
                d[attr] = types.MethodType(new, obj)
                count += 1
    return count
