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

import functools
import importlib
import logging
from collections.abc import Callable
from typing import Any

import torch

from aiter_norm_guard._log import log_once
from aiter_norm_guard.guard import codegen, layout, pair_codegen, pairs
from aiter_norm_guard.guard.checks import fast_checks, own_failure, record, tensor_attr
from aiter_norm_guard.guard.fallbacks import pad_like_release
from aiter_norm_guard.guard.registry import guard_of, original_of, register
from aiter_norm_guard.guard.signature import POSITIONAL, entry_signature, takes_any
from aiter_norm_guard.kernels.form import Kernel
from aiter_norm_guard.kernels.needs import ROWS_LAYOUT, SAME_ROWS, needs, still_needed
from aiter_norm_guard.targets import Target
from aiter_norm_guard.targets.upstream import Upstream

Tensor = torch.Tensor
Forward = Callable[..., Any]
__all__ = ["Guard", "guard_of", "original_of", "tensor_attr"]


class Guard:
    """One guarded entry: the original, its declaration, the contract it meets, and the switch
    ``uninstall`` turns off.  ``kernels``: the route the patcher found (default: the target's);
    ``upstream``: the release row the entry's fingerprint matched (None: check everything)."""

    def __init__(
        self,
        original: Forward,
        target: Target,
        allow_row_stride: bool = False,
        kernels: tuple[Kernel, ...] | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.original, self.target, self.upstream = original, target, upstream
        self.allow_row_stride = allow_row_stride
        self.enabled = True
        self.kernels = kernels if kernels is not None else target.kernels
        self.needs = needs(*self.kernels)
        self.pad_needs = needs(target.pad) if target.pad is not None else None
        self.done_alone = upstream.alone if upstream else frozenset()
        self.done_rows = upstream.with_rows if upstream else frozenset()
        f = target.feed
        wanted = {
            f.x,
            *f.rows,
            *f.summed,
            *(n for pair in f.pairs for n in pair),
            *(v for v in f.vectors if not v.startswith("self.")),
        }
        self.sig = entry_signature(original, wanted)
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
        if f.x not in names:
            raise LookupError(f"{target.name}{self.sig} has no parameter {f.x!r}")
        self.names = names
        self.x_index = names.index(f.x)
        self.rows_index = tuple(names.index(n) for n in f.rows if n in names)
        self.summed_index = tuple(names.index(n) for n in f.summed if n in names)
        self.pair_index = tuple((names.index(t), names.index(w)) for t, w in f.pairs if t in names and w in names)
        self.weight_specs = tuple(self._weight_spec(w, names) for w in (f.vectors if not f.pairs else ()))
        self.kernel_dtypes = tuple(getattr(torch, d) for d in f.kernel_dtypes)
        self.fallback_index = tuple(names.index(n) for n in target.fallback_params if n in names)
        self._fallback_fn = self._resolve_fallback(target.fallback)

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
        return [values[s] if isinstance(s, int) else tensor_attr(values[0], s) for s in self.weight_specs]

    def present(self, values: tuple[Any, ...], index: tuple[int, ...]) -> list[Any]:
        return [values[i] for i in index if values[i] is not None]

    def pad_mode(self, module: Any) -> bool:
        """RMSNorm built with ``x_pad_to_multiple``: the release calls its Triton pad kernel."""
        state = getattr(module, "__dict__", {})
        return (
            self.pad_needs is not None
            and state.get("_fused_pad_kernel") is not None
            and bool(state.get("x_pad_to_multiple", 0))
        )

    def tensor_indices(self, values: tuple[Any, ...]) -> list[int]:
        """Where the tensors of a plan go, in its order: every pair's rows (or x), then the present rows,
        then (with rows) the summed tensors."""
        if self.pair_index:
            return [t for t, _ in self.pair_index if values[t] is not None] + [
                i for i in self.rows_index if values[i] is not None
            ]
        rows = [i for i in self.rows_index if values[i] is not None]
        return [self.x_index, *rows, *([i for i in self.summed_index if values[i] is not None] if rows else [])]

    def decide_pairs(self, values: tuple[Any, ...]) -> tuple[str, Any] | None:
        """:meth:`decide` for entries of ``(rows, weight)`` pairs."""
        given = [(values[t], values[w]) for t, w in self.pair_index if values[t] is not None]
        rows = self.present(values, self.rows_index)
        if (
            not given
            or not all(isinstance(t, Tensor) for pair in given for t in pair)
            or not all(isinstance(r, Tensor) for r in rows)
        ):
            return None
        reason = pairs.refusal(given, rows, self.needs)
        if reason is not None:
            return ("fallback", reason)
        p = pairs.plan([t for t, _ in given] + rows, self.needs)
        if p is not None and not self.target.feed.refit:
            return ("fallback", layout.LAYOUT_DECLINED)
        return None if p is None else ("call", p)

    def decide(self, values: tuple[Any, ...]) -> tuple[str, Any] | None:
        """``("fallback", reason)``, ``("call", plan)``, or None to pass the call through untouched."""
        if self.pair_index:
            return self.decide_pairs(values)
        x = values[self.x_index]
        rows = self.present(values, self.rows_index)
        summed = self.present(values, self.summed_index) if rows else []
        if not isinstance(x, Tensor) or not all(isinstance(t, Tensor) for t in (*rows, *summed)):
            return None  # not ours to judge: the original behaves as it does
        f, module = self.target.feed, values[0] if self.is_method else None
        if self.kernel_dtypes and (
            x.dtype not in self.kernel_dtypes or (f.dtype_attr and x.dtype != getattr(module, f.dtype_attr, None))
        ):
            return None  # the entry takes its own native path for these dtypes
        weights = self.weights(values)
        if not all(isinstance(w, Tensor) for w in weights):
            return None
        done = self.done_rows if rows else self.done_alone
        if layout.exit_of(x, weights, done):
            return None  # the release itself returns, or goes to its native path, before any kernel
        pad = self.pad_mode(module)
        kernel_needs = self.pad_needs if pad and self.pad_needs is not None else self.needs
        hidden = getattr(module, "__dict__", {}).get(f.hidden) if f.hidden else None
        reason = layout.refusal(x, rows, summed, weights, kernel_needs, done, hidden)
        if reason is not None:
            return ("fallback", reason)
        p = layout.plan(x, rows, summed, kernel_needs, done, self.allow_row_stride, f.keep_rank)
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
        if self._fallback_fn is None:
            method = getattr(values[0], self.target.fallback.split(".", 1)[1])
            args = [values[i] for i in self.fallback_index]
            while len(args) > 1 and args[-1] is None:  # the defaults: fits an older native's signature too
                args.pop()
            result = method(*args)
            try:
                return pad_like_release(values[0], result) if self.pad_mode(values[0]) else result
            except Exception as exc:
                own_failure(self.target.name, exc, "forward_native's result was returned unpadded")
                return result
        bound = {**dict(zip(self.names, values, strict=False)), **keywords}
        return self._fallback_fn(self.original, bound, reason)

    def contiguous_weights(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The pairs' weights the kernel reads one element apart, each a contiguous copy where it is
        strided: one ``n``-element copy makes the kernel exact (the values tuple itself where none is)."""
        if not (self.pair_index and self.needs.weight_contiguous):
            return values
        strided = [w for _, w in self.pair_index if isinstance(values[w], Tensor) and not values[w].is_contiguous()]
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
        checks = list(still_needed(self.needs, self.done_alone, self.done_rows))
        if self.unseen:
            checks = [f"{c} (unseen: {', '.join(self.unseen)})" if c in (ROWS_LAYOUT, SAME_ROWS) else c for c in checks]
        return checks

    # -- the function ------------------------------------------------------------
    def build(self) -> Forward:
        """The guarded function: fast path compiled from the contract, ``slow`` behind it."""
        f, name = self.target.feed, self.original.__name__
        target = self.target.name
        if self.pair_index:
            ns = {"_original": self.original, "_slow": self.slow, "_no_keywords": {}}
            rows = tuple(n for n in f.rows if n in self.names)
            src = pair_codegen.pairs_fast_path_source(name, self.sig, ns, f.pairs, rows, self.needs)
            return self._compiled(src, ns, name)

        def lean_record(view: bool) -> None:
            record(target, layout.VIEW if view else layout.LAYOUT_COPY)

        ns: dict[str, Any] = {"_original": self.original, "_slow": self.slow, "_record": lean_record}
        ns["_no_keywords"] = {}
        alone, with_rows = fast_checks(self, self.done_alone), fast_checks(self, self.done_rows, rows=True)
        lean = self.is_method and not f.keep_rank and self.target.fallback.startswith("self.")
        alone = alone._replace(lean_rows=lean)
        lean_guard = " and _guard.enabled"  # uninstalled: the caller's own layout goes to sglang unchanged
        if self.target.pad is not None:
            lean_guard += f" and {self.self_name}.__dict__.get('_fused_pad_kernel') is None"
        ns["_guard"] = self
        rows = tuple(n for n in f.rows if n in self.names)
        summed = tuple(n for n in f.summed if n in self.names)
        src = codegen.fast_path_source(
            name, self.sig, ns, f.x, f.vectors, self.self_name, alone, rows, summed, with_rows, f.hidden, lean_guard
        )
        return self._compiled(src, ns, name)

    def _compiled(self, src: str, ns: dict[str, Any], name: str) -> Forward:
        fn = codegen.compile_function(src, ns, name, f"<aiter_norm_guard {self.target.name}>")
        functools.update_wrapper(fn, self.original)
        register(fn, self)
        return fn
