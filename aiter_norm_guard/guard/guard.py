"""Build a guarded entry from its :class:`~aiter_norm_guard.targets.Target` declaration.

The result is a plain function with the original's exact signature (``torch.compile``
traces through it).  What it checks comes from the kernels' contracts
(:func:`~aiter_norm_guard.kernels.needs.needs`) less what the installed release's entry
already does itself (:mod:`~aiter_norm_guard.targets.upstream`, by the entry's
fingerprint): the fast path (:mod:`~aiter_norm_guard.guard.codegen`) calls the original at
once when those hold; :meth:`Guard.slow` canonicalizes with
:mod:`~aiter_norm_guard.guard.layout`, routes to the fallback, or passes the call through.
The guard's own failures take the entry's fallback, never the kernel with an unchecked call
(each distinct one logged once); exceptions of the original or the fallback reach the caller
unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard.guard import codegen, layout
from aiter_norm_guard.guard.checks import own_failure, record, tensor_attr
from aiter_norm_guard.guard.fallbacks import FALLBACKS, pad_like_release
from aiter_norm_guard.guard.registry import EntryGuard, guard_of, original_of
from aiter_norm_guard.guard.signature import POSITIONAL, entry_signature, takes_any
from aiter_norm_guard.kernels.needs import ROWS_LAYOUT, SAME_ROWS, Checks, Needs, checks, named, needs
from aiter_norm_guard.targets import Attr, Native, Param, Route

Tensor = torch.Tensor
Forward = Callable[..., Any]
__all__ = ["Guard", "guard_of", "original_of", "tensor_attr"]


class Guard(EntryGuard):
    """One guarded entry: the original, its declaration, the per-call checks its kernels need (less what the
    release does itself: computed here once, read by the fast path, the slow path and the report), and the
    switch ``uninstall`` turns off.  ``kernels``: the route the patcher found (default: the target's);
    ``upstream``: the release row the entry's fingerprint matched (None: check everything)."""

    def prepare(self) -> None:
        target, original, f = self.target, self.original, self.target.feed
        self.needs = needs(*(self.kernels if self.kernels is not None else target.kernels))
        params = {v.name for g in f.groups for v in g.vectors if isinstance(v, Param)}
        self.sig = entry_signature(original, {*(g.rows for g in f.groups), *f.rows, *f.summed, *params})
        names = [p.name for p in self.sig.parameters.values() if p.kind in POSITIONAL]
        self.unseen = sorted(n for n in (*f.rows, *f.summed) if n not in names and takes_any(self.sig))
        if self.unseen:
            log_once(
                f"unseen:{target.name}",
                logging.WARNING,
                "aiter_norm_guard: %s is wrapped by a function that "
                "takes *args without naming %s (and no __wrapped__ says where): calls passing them are checked "
                "without them",
                target.name,
                ", ".join(self.unseen),
            )
        self.is_method = "." in target.attribute
        self.self_name = names[0] if self.is_method and names else None
        for v in (*(v for v in f.groups[0].vectors if isinstance(v, Param)), Param(f.x)):
            if v.name not in names:
                raise LookupError(f"{target.name}{self.sig} has no parameter {v.name!r}")
        if self.self_name is None and any(isinstance(v, Attr) for g in f.groups for v in g.vectors):
            raise LookupError(f"{target.name}: a module's vector needs a method")
        self.names = names
        self.groups = tuple(
            g for g in f.groups if g.rows in names and all(v.name in names for v in g.vectors if isinstance(v, Param))
        )
        if len(self.groups) < len(f.groups) and not takes_any(self.sig):  # a declaration that names no parameter
            raise LookupError(f"{target.name}{self.sig} lacks a parameter of {set(f.groups) - set(self.groups)}")
        self.group_index = tuple(
            (names.index(g.rows), tuple(names.index(v.name) if isinstance(v, Param) else v.names for v in g.vectors))
            for g in self.groups
        )
        self.x_index = self.group_index[0][0]
        self.rows_index = tuple(names.index(n) for n in f.rows if n in names)
        self.summed_index = tuple(names.index(n) for n in f.summed if n in names)
        self.kernel_dtypes = tuple(getattr(torch, d) for d in f.kernel_dtypes)
        self.alone, self.with_rows = self._checks(self.needs)
        #: Routes taken per call by the instance's state (RMSNorm's pad path), with their own checks.
        self.instance_routes = tuple((r, self._checks(needs(*r.kernels))) for r in target.routes if r.instance)
        if isinstance(target.fallback, Native):
            self.fallback_index = tuple(names.index(n) for n in target.fallback.params if n in names)
        else:
            self._fallback_fn = FALLBACKS[target.fallback]

    def _checks(self, n: Needs) -> tuple[Checks, Checks]:
        up, several = self.upstream, len(self.target.feed.groups)  # as declared, whatever a wrapper hides
        alone, with_rows = (up.alone, up.with_rows) if up else ((), ())
        row_stride = self.allow_row_stride
        return checks(n, alone, False, row_stride, several), checks(n, with_rows, True, row_stride, several)

    # -- the slow path -----------------------------------------------------------
    def vectors(self, values: tuple[Any, ...], specs: tuple[int | tuple[str, ...], ...]) -> list[Any]:
        """The tensors the kernel reads as a group's vectors (weight, bias), or None where absent."""
        return [values[s] if isinstance(s, int) else tensor_attr(values[0], s) for s in specs]

    def present(self, values: tuple[Any, ...], index: tuple[int, ...]) -> list[Any]:
        return [values[i] for i in index if values[i] is not None]

    def route_of(self, module: Any) -> tuple[Route, tuple[Checks, Checks]] | None:
        """The instance route this module takes (RMSNorm built with ``x_pad_to_multiple``), if any."""
        state = getattr(module, "__dict__", {})
        return next((r for r in self.instance_routes if all(state.get(a) for a in r[0].instance)), None)

    def tensor_indices(self, values: tuple[Any, ...]) -> list[int]:
        """Where the tensors of a plan go, in its order: every group's rows, the present rows, then (with rows)
        the summed tensors."""
        rows = [i for i in self.rows_index if values[i] is not None]
        xs = [t for t, _ in self.group_index if t == self.x_index or values[t] is not None]
        return [*xs, *rows, *([i for i in self.summed_index if values[i] is not None] if rows else [])]

    def decide(self, values: tuple[Any, ...]) -> tuple[str, Any] | None:
        """``("fallback", reason)``, ``("call", plan)``, or None to pass the call through untouched."""
        x = values[self.x_index]
        groups = [
            (values[t], self.vectors(values, specs))
            for t, specs in self.group_index
            if t == self.x_index or values[t] is not None
        ]
        rows = self.present(values, self.rows_index)
        summed = self.present(values, self.summed_index) if rows else []
        tensors = (*(t for g in groups for t in (g[0], *g[1])), *rows, *summed)
        if not all(isinstance(t, Tensor) for t in tensors):
            return None  # not ours to judge: the original behaves as it does
        f, module = self.target.feed, values[0] if self.is_method else None
        if self.kernel_dtypes and (
            x.dtype not in self.kernel_dtypes or (f.dtype_attr and x.dtype != getattr(module, f.dtype_attr, None))
        ):
            return None  # the entry takes its own native path for these dtypes
        route = self.route_of(module)
        c = (route[1] if route else (self.alone, self.with_rows))[1 if rows else 0]
        if layout.exit_of(x, groups[0][1], c):
            return None  # the release itself returns, or goes to its native path, before any kernel
        hidden = getattr(module, "__dict__", {}).get(f.hidden) if f.hidden else None
        reason = layout.refusal(groups, rows, summed, c, hidden)
        if reason is not None:
            return ("fallback", reason)
        p = layout.plan([g[0] for g in groups], rows, summed, c, f.keep_rank)
        if p is not None and not f.refit:
            return ("fallback", layout.LAYOUT_DECLINED)
        return None if p is None else ("call", p)

    def fallback(self, values: tuple[Any, ...], keywords: dict[str, Any], reason: str) -> Any:
        """The entry's fallback: the module's own method, or a fallback function of this package."""
        if reason == layout.ROWS_EXPAND:
            shapes = [tuple(values[i].shape) for i in (self.x_index, *self.rows_index) if values[i] is not None]
            raise ValueError(
                f"{self.target.name}: {reason} (shapes {shapes}); aiter's kernel reads the residual "
                "with the activation's rows, and the reference path would broadcast"
            )
        native = self.target.fallback
        if not isinstance(native, Native):
            bound = {**dict(zip(self.names, values, strict=False)), **keywords}
            return self._fallback_fn(self.original, bound, reason)
        args = [values[i] for i in self.fallback_index]
        while len(args) > 1 and args[-1] is None:  # the defaults: fits an older native's signature too
            args.pop()
        result = getattr(values[0], native.method)(*args)
        route = self.route_of(values[0])
        if route is None or route[0].pad_to is None:
            return result
        try:
            return pad_like_release(int(values[0].__dict__.get(route[0].pad_to, 0)), result)
        except Exception as exc:
            own_failure(self.target.name, exc, f"{native.method}'s result was returned unpadded")
            return result

    def contiguous_weights(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """With several groups, their weight parameters that the kernel reads one element apart, each a
        contiguous copy where it is strided: one ``n``-element copy makes the kernel exact (the values tuple
        itself where none is)."""
        if len(self.target.feed.groups) < 2 or not self.needs.weight_contiguous:
            return values
        weights = {i for _, specs in self.group_index for i in specs if isinstance(i, int)}
        strided = [i for i in weights if isinstance(values[i], Tensor) and not values[i].is_contiguous()]
        if not strided:
            return values
        record(self.target.name, layout.WEIGHT_COPY)
        return tuple(v.contiguous() if i in strided else v for i, v in enumerate(values))

    def slow(self, values: tuple[Any, ...], keywords: dict[str, Any]) -> Any:
        if not self.enabled:
            return self.original(*values, **keywords)
        try:
            values = self.contiguous_weights(values)
            action = self.decide(values)
            if action is not None and action[0] == "call":
                new = list(values)
                for i, t in zip(self.tensor_indices(values), action[1].tensors, strict=False):
                    new[i] = t
        except Exception as exc:  # the guard's own failure on a call its fast path did not pass: the safe route
            own_failure(self.target.name, exc, "the call took the entry's fallback, not the kernel")
            action = ("fallback", layout.GUARD_ERROR)
        if action is None:
            return self.original(*values, **keywords)
        kind, detail = action
        if kind == "fallback":
            record(self.target.name, detail)
            return self.fallback(values, keywords, detail)
        record(self.target.name, detail.kind)
        result = self.original(*new, **keywords)
        try:
            return detail.restore(result)
        except Exception as exc:
            own_failure(self.target.name, exc, "the kernel's result was returned in its rows' shape")
            return result

    def per_call_checks(self) -> list[str]:
        """What this guard checks per call (the contract's needs the release does not meet itself); where
        a wrapper hides the residual, the checks that need it are marked unseen."""
        checks = list(named(self.alone, self.with_rows))
        if self.unseen:
            checks = [f"{c} (unseen: {', '.join(self.unseen)})" if c in (ROWS_LAYOUT, SAME_ROWS) else c for c in checks]
        return checks

    # -- the function ------------------------------------------------------------
    def build(self) -> Forward:
        """The guarded function: fast path compiled from the per-call checks, ``slow`` behind it."""
        f, target = self.target.feed, self.target.name

        def lean_record(view: bool) -> None:
            record(target, layout.VIEW if view else layout.LAYOUT_COPY)

        ns: dict[str, Any] = {"_original": self.original, "_slow": self.slow, "_record": lean_record}
        ns.update(_no_keywords={}, _guard=self)  # as EntryGuard.compile gives them
        lean = None
        if (
            self.is_method
            and not f.keep_rank
            and not f.kernel_dtypes  # other dtypes take the release's native path: the slow path sees them
            and isinstance(self.target.fallback, Native)
            and len(f.groups) == 1
        ):
            lean = " and _guard.enabled"  # uninstalled: the caller's own layout goes to sglang unchanged
            for r, _ in self.instance_routes:  # a module on an instance route: the slow path
                state = " and ".join(f"{self.self_name}.__dict__.get({a!r})" for a in r.instance)
                lean += f" and not ({state})"
        src = codegen.fast_path_source(
            self.original.__name__,
            self.sig,
            ns,
            [(g.rows, g.vectors) for g in self.groups],
            self.self_name,
            self.alone,
            tuple(n for n in f.rows if n in self.names),
            tuple(n for n in f.summed if n in self.names),
            self.with_rows,
            f.hidden,
            lean,
        )
        return self.finish(src, ns)
