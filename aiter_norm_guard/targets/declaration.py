"""The form of a target declaration: what to patch, what it feeds its kernels, how it is selected."""

from __future__ import annotations

from typing import NamedTuple

from aiter_norm_guard.kernels.form import CacheWrite, GroupQuantStore, Kernel


class Feed(NamedTuple):
    """How an entry hands its parameters to its kernels (names of the entry's parameters).

    ``rows``: indexed with ``x``'s rows by the kernel (residual).  ``summed``: only added to
    the first of ``rows`` in Python before the kernel (post-residual addition): no layout of
    their own matters, only the sum's.  ``vectors``: read as ``n`` elements (``"self.NAME"``
    is a module tensor, ``"self.A|self.B"`` the first that exists, a bare name a parameter).
    ``hidden``: a module attribute the entry reshapes ``x`` to (else ``x``'s last dimension).
    ``keep_rank``: the entry unpacks a 2-D shape itself, so tensors are only made contiguous.
    ``kernel_dtypes`` / ``dtype_attr``: the entry reaches a kernel only for these activation
    dtypes, equal to this module attribute; other calls are the release's own native path.
    ``pairs``: ``(rows, weight)`` parameters normalized each with its own width (MLA's q and k,
    the Triton quant's two inputs); the first pair's rows are ``x``, and the others are read
    with its row count.  ``refit=False``: a layout the kernel cannot read goes to the fallback
    too, never to a copy (the all-reduce fusion, whose caller has an unfused route).
    """

    x: str = "x"
    rows: tuple[str, ...] = ()
    summed: tuple[str, ...] = ()
    vectors: tuple[str, ...] = ("self.weight",)
    hidden: str | None = None
    keep_rank: bool = False
    kernel_dtypes: tuple[str, ...] = ()
    dtype_attr: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    refit: bool = True


class Route(NamedTuple):
    """Other kernels, reached when the module global ``flag`` is true, or when the module's
    ``binding`` comes from an aiter module under ``prefix`` (decided once, at patch time)."""

    kernels: tuple[Kernel, ...]
    flag: str | None = None
    binding: str | None = None
    prefix: str = "aiter.ops.triton"


class Target(NamedTuple):
    """One entry to guard when its module is imported.

    ``kernels``: every kernel the entry may reach (the guard meets the strictest);
    ``routes``: other kernels for other bindings (e.g. aiter's Triton norm on gfx1250);
    ``pad``: the kernel of RMSNorm's ``x_pad_to_multiple`` path.  ``fallback``:
    ``"self.METHOD"`` calls that method of the module with ``fallback_params`` (those the
    entry has); ``"package.module:function"`` calls ``function(original, bound, reason)``.
    ``selected_by``: module globals that must all be true for the aiter branch to run
    (``"A|B"``: whichever of them the release defines);
    ``aiter_calls``: the module's aiter bindings that branch calls (checked in the entry's
    source, so a release whose branch calls something else is left alone).  ``binding``: the
    entry is a module global bound to aiter's function (or to sglang's wrapper of it) only
    where aiter is selected: present means selected.  ``bound_attrs``: instance attributes that
    may hold the entry bound before the guard came.  ``cache_writes``: the entry is a method around one
    of these fused KV-cache writes (mrope: the one whose positions are 2-D), judged per call by its contract
    (the fallback is the release's unfused route); ``cache_view``: the entry is such a kernel's binding, and
    these two parameters (K and V cache) get the contract's zero-copy view where they have the layout it fixes.
    ``group_quant``: the entry is the binding of this fused group-quant store, judged per call by its contract.
    """

    name: str
    module: str
    attribute: str
    feed: Feed
    kernels: tuple[Kernel, ...]
    fallback: str
    fallback_params: tuple[str, ...]
    selected_by: tuple[str, ...]
    aiter_calls: tuple[str, ...]
    bound_attrs: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    pad: Kernel | None = None
    binding: bool = False
    cache_writes: tuple[CacheWrite, ...] = ()
    cache_view: tuple[str, str] | None = None
    group_quant: GroupQuantStore | None = None

    @property
    def kernel(self) -> str:
        """The kernels by name, for reports."""
        names = [k.name for k in self.kernels] + [k.name for r in self.routes for k in r.kernels]
        names += [c.name for c in self.cache_writes] + ([self.group_quant.name] if self.group_quant else [])
        return " / ".join(dict.fromkeys(names + ([self.pad.name] if self.pad else [])))


def selected(target: Target, module: object) -> bool:
    """Whether ``module``'s globals select the target's aiter branch (see ``Target.selected_by``)."""
    return all(any(getattr(module, name, False) for name in flag.split("|")) for flag in target.selected_by)
