"""Build a guarded entry from its :class:`~aiter_norm_guard.targets.Target` declaration.

The result is a plain function with the original's exact signature (``torch.compile``
traces through it, and it costs less per call than a wrapper object).  Its fast path
(:mod:`aiter_norm_guard.patching.codegen`) calls the original at once when every tensor already meets
the kernel contract; everything else goes to :meth:`Guard.slow`, which canonicalizes with
:mod:`aiter_norm_guard.contracts.layout`, routes to the entry's fallback, or passes the call through
untouched.  Only the guard's own failures fall back to the original call (each distinct one
logged once); exceptions of the original or the fallback reach the caller unchanged.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard.contracts import layout
from aiter_norm_guard.patching import codegen
from aiter_norm_guard.patching.registry import guard_of, original_of, register
from aiter_norm_guard.targets import Target

Tensor = torch.Tensor
Forward = Callable[..., Any]
__all__ = ["Guard", "guard_of", "make_guarded", "original_of", "tensor_attr"]


def tensor_attr(obj: Any, names: tuple[str, ...]) -> Tensor | None:
    """The first of ``names`` that is a tensor on ``obj`` (parameter, buffer or plain attribute)."""
    for name in names:
        for store in (getattr(obj, "_parameters", None), getattr(obj, "_buffers", None), getattr(obj, "__dict__", {})):
            value = store.get(name) if isinstance(store, dict) else None
            if isinstance(value, Tensor):
                return value
    return None


def own_failure(target: str, exc: BaseException) -> None:
    """Log one of the guard's own failures, once per distinct failure (type and place)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log_once(
        f"own-failure:{target}:{type(exc).__name__}:{where}",
        logging.WARNING,
        "aiter_norm_guard: internal error in the guard of %s (%s: %s at %s); the call went to sglang unchanged",
        target,
        type(exc).__name__,
        exc,
        where,
    )


class Guard:
    """One guarded entry: the original, its declaration, and the switch ``uninstall`` turns off."""

    def __init__(self, original: Forward, target: Target, allow_row_stride: bool = False) -> None:
        self.original = original
        self.target = target
        self.allow_row_stride = allow_row_stride
        self.enabled = True
        c = target.contract
        self.sig = self._signature(original, c.x)
        names = [p.name for p in self.sig.parameters.values() if p.kind in codegen._POSITIONAL]
        self.is_method = "." in target.attribute
        self.self_name = names[0] if self.is_method and names else None
        if c.x not in names:
            raise LookupError(f"{target.name}{self.sig} has no parameter {c.x!r}")
        self.x_index = names.index(c.x)
        self.like_index = tuple(names.index(n) for n in c.like_x if n in names)
        self.weight_specs = tuple(self._weight_spec(w, names) for w in c.weights)
        self.kernel_dtypes = tuple(getattr(torch, d) for d in c.kernel_dtypes)
        self.fallback_index = tuple(names.index(n) for n in target.fallback_params if n in names)
        self.names = names
        self._fallback_fn = self._resolve_fallback(target.fallback)

    @staticmethod
    def _signature(original: Forward, x: str) -> inspect.Signature:
        """The signature calls must fit: ``original``'s own, not what ``__wrapped__`` says it wraps
        (a third party's narrower wrapper), unless it takes ``*args`` and does not name ``x``."""
        own = inspect.signature(original, follow_wrapped=False)
        takes_any = any(p.kind is p.VAR_POSITIONAL for p in own.parameters.values())
        return inspect.signature(original) if x not in own.parameters and takes_any else own

    def _weight_spec(self, spec: str, names: list[str]) -> tuple[str, ...] | int:
        if spec.startswith("self."):
            if self.self_name is None:
                raise LookupError(f"{self.target.name}: {spec!r} needs a method")
            return tuple(part.split(".", 1)[1] for part in spec.split("|"))
        if spec not in names:
            raise LookupError(f"{self.target.name}{self.sig} has no parameter {spec!r}")
        return names.index(spec)

    @staticmethod
    def _resolve_fallback(fallback: str) -> Callable[..., Any] | None:
        if fallback.startswith("self."):
            return None
        module, _, name = fallback.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    # -- the slow path -----------------------------------------------------------
    def weights(self, values: tuple[Any, ...]) -> list[Any]:
        """The tensors the kernel would read as the weight (and bias), or None where absent."""
        return [
            values[spec] if isinstance(spec, int) else tensor_attr(values[0], spec) for spec in self.weight_specs
        ]

    def decide(self, values: tuple[Any, ...]) -> tuple[str, Any] | None:
        """``("fallback", reason)``, ``("call", plan)``, or None to pass the call through untouched."""
        x = values[self.x_index]
        like = [values[i] for i in self.like_present(values)]
        if not isinstance(x, Tensor) or not all(isinstance(t, Tensor) for t in like):
            return None  # not ours to judge: the original behaves as it does
        c, module = self.target.contract, values[0] if self.is_method else None
        if self.kernel_dtypes and (
            x.dtype not in self.kernel_dtypes or (c.dtype_attr and x.dtype != getattr(module, c.dtype_attr, None))
        ):
            return None  # the entry takes its own native path for these dtypes
        weights = self.weights(values)
        if not all(isinstance(w, Tensor) for w in weights):
            return None
        if x.dim() == 0:
            return ("fallback", layout.RANK_ZERO)
        pad_to = getattr(module, "x_pad_to_multiple", 0)
        if c.pad and getattr(module, "_fused_pad_kernel", None) is not None and pad_to:
            # Triton reads both strides and the weight in its own dtype; it only needs n weight elements
            short = any(w.numel() != x.shape[-1] for w in weights)
            return ("fallback", layout.HIDDEN_SIZE) if short else None
        reason = layout.refusal(x, like, weights)
        if reason is not None:
            return ("fallback", reason)
        p = layout.plan(x, like, self.allow_row_stride and not c.keep_rank, c.keep_rank)
        if all(new is old for new, old in zip(p.tensors, (x, *like), strict=True)):
            return None
        return ("call", p)

    def fallback(self, values: tuple[Any, ...], keywords: dict[str, Any], reason: str) -> Any:
        """The entry's fallback: the module's own method, or a fallback function of this package."""
        if reason == layout.ROWS_EXPAND:
            shapes = [tuple(values[i].shape) for i in (self.x_index, *self.like_present(values))]
            raise ValueError(f"{self.target.name}: {reason} (shapes {shapes}); aiter's kernel reads the residual "
                             "with the activation's rows, and the reference path would broadcast")  # fmt: skip
        if self._fallback_fn is None:
            method = getattr(values[0], self.target.fallback.split(".", 1)[1])
            args = [values[i] for i in self.fallback_index]
            while len(args) > 1 and args[-1] is None:  # the defaults: fits an older native's signature too
                args.pop()
            return method(*args)
        bound = {**dict(zip(self.names, values, strict=False)), **keywords}
        return self._fallback_fn(self.original, bound, reason)

    def slow(self, values: tuple[Any, ...], keywords: dict[str, Any]) -> Any:
        if not self.enabled:
            return self.original(*values, **keywords)
        try:
            action = self.decide(values)
        except Exception as exc:  # the guard's own failure: keep sglang's behaviour
            own_failure(self.target.name, exc)
            action = None
        if action is None:
            return self.original(*values, **keywords)
        kind, detail = action
        if kind == "fallback":
            return self.fallback(values, keywords, detail)
        new = list(values)
        for i, t in zip((self.x_index, *self.like_present(values)), detail.tensors, strict=True):
            new[i] = t
        result = self.original(*new, **keywords)
        try:
            return detail.restore(result)
        except Exception as exc:
            own_failure(self.target.name, exc)
            return result

    def like_present(self, values: tuple[Any, ...]) -> tuple[int, ...]:
        return tuple(i for i in self.like_index if values[i] is not None)

    # -- the function ------------------------------------------------------------
    def build(self) -> Forward:
        """The guarded function: fast path compiled from the declaration, ``slow`` behind it."""
        c, name = self.target.contract, self.original.__name__
        ns: dict[str, Any] = {
            "_original": self.original,
            "_slow": self.slow,
            "_no_keywords": {},
        }
        like = tuple(n for n in c.like_x if n in self.names)
        src = codegen.fast_path_source(name, self.sig, ns, c.x, like, c.weights, self.self_name)
        fn = codegen.compile_function(src, ns, name, f"<aiter_norm_guard {self.target.name}>")
        functools.update_wrapper(fn, self.original)
        register(fn, self)
        return fn


def make_guarded(original: Forward, target: Target, allow_row_stride: bool = False) -> Forward:
    """The guarded replacement for ``original`` (a plain function; see :class:`Guard`)."""
    return Guard(original, target, allow_row_stride).build()
