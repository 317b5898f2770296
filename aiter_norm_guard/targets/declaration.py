"""The form of a target declaration: what to patch, what it feeds its kernels, how it is selected."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from aiter_norm_guard.kernels.form import CacheWrite, GroupQuantStore, Kernel


class Param(NamedTuple):
    """A vector (weight, bias) the entry takes as its parameter ``name``."""

    name: str


class Attr(NamedTuple):
    """A vector the entry's module holds: the first of ``names`` it has (``GemmaRMSNorm``: its
    ``gemma_weight`` buffer where the release keeps one, else ``weight``)."""

    names: tuple[str, ...]


WEIGHT = Attr(("weight",))


class Group(NamedTuple):
    """A rows tensor the kernel normalizes (the entry's parameter ``rows``) and the vectors it reads
    with that tensor's width: an RMSNorm is one group, MLA's q / k norm two, a Triton quant two."""

    rows: str
    vectors: tuple[Param | Attr, ...] = (WEIGHT,)


class Feed(NamedTuple):
    """How an entry hands its parameters to its kernels (names of the entry's parameters).

    ``groups``: the normalized tensors, each with its vectors; the first one's rows are ``x`` and set
    the row count.  ``rows``: indexed with ``x``'s rows by the kernel (residual).  ``summed``: only
    added to the first of ``rows`` in Python before the kernel (post-residual addition): no layout of
    their own matters, only the sum's.  ``hidden``: a module attribute the entry reshapes ``x`` to
    (else ``x``'s last dimension).  ``keep_rank``: the entry unpacks a 2-D shape itself, so tensors
    are only made contiguous (always so with several groups).  ``kernel_dtypes`` / ``dtype_attr``:
    the entry reaches a kernel only for these activation dtypes, equal to this module attribute;
    other calls are the release's own native path.  ``refit=False``: a layout the kernel cannot read
    goes to the fallback too, never to a copy (the all-reduce fusion, whose caller has an unfused route).
    """

    groups: tuple[Group, ...] = (Group("x"),)
    rows: tuple[str, ...] = ()
    summed: tuple[str, ...] = ()
    hidden: str | None = None
    keep_rank: bool = False
    kernel_dtypes: tuple[str, ...] = ()
    dtype_attr: str | None = None
    refit: bool = True

    @property
    def x(self) -> str:
        return self.groups[0].rows


class Native(NamedTuple):
    """The fallback is the module's own ``method`` (``forward_native``), given these of the entry's parameters."""

    method: str
    params: tuple[str, ...]


class Fallback(Enum):
    """A fallback function of the guard's, called as ``fallback(original, bound, reason)``
    (:mod:`aiter_norm_guard.guard.fallbacks` maps each to its function)."""

    FP8_PER_TOKEN_QUANT = "sglang's fp8 per-token quant, exact where there is an answer, else ValueError"
    QUANT_REFUSAL = "ValueError: the Triton quants have no native path"
    QK_RMSNORM_NATIVE = "sglang's native RMSNorm arithmetic on q and k"
    DECLINE = "None: the caller takes its unfused route"
    UNFUSED_CACHE_WRITE = "the release's forward_prepare_native + the pool's set_kv_buffer"


class Route(NamedTuple):
    """Other kernels, reached when the module global ``flag`` is true, or when the module's ``binding``
    comes from an aiter module under ``prefix`` (decided once, at patch time), or, per call, when the
    instance has every attribute of ``instance`` set (RMSNorm's ``x_pad_to_multiple`` path: then the
    fallback's result is padded as the route pads it, to a multiple of the instance's ``pad_to``)."""

    kernels: tuple[Kernel, ...]
    flag: str | None = None
    binding: str | None = None
    prefix: str = "aiter.ops.triton"
    instance: tuple[str, ...] = ()
    pad_to: str | None = None


class Target(NamedTuple):
    """One entry to guard when its module is imported.

    ``kernels``: every kernel the entry may reach (the guard meets the strictest); ``routes``: other
    kernels for other bindings, flags or instances.  ``fallback``: what runs where no layout meets the
    kernels.  ``selected_by``: module globals that must all be true for the aiter branch to run, each
    given as the names a release may call it by (whichever it defines); ``aiter_calls``: the module's
    aiter bindings that branch calls (checked in the entry's source, so a release whose branch calls
    something else is left alone).  ``binding``: the entry is a module global bound to aiter's function
    (or to sglang's wrapper of it) only where aiter is selected: present means selected.
    ``bound_attrs``: instance attributes that may hold the entry bound before the guard came.
    ``cache_writes``: the entry is a method around one of these fused KV-cache writes (mrope: the one
    whose positions are 2-D), judged per call by its contract; ``cache_view``: the entry is such a
    kernel's binding, and these two parameters (K and V cache) get the contract's zero-copy view where
    they have the layout it fixes.  ``group_quant``: the entry is the binding of this fused group-quant
    store, judged per call by its contract.
    """

    name: str
    module: str
    attribute: str
    feed: Feed
    kernels: tuple[Kernel, ...]
    fallback: Native | Fallback | None  # None: the guard raises where the kernel would misread
    selected_by: tuple[tuple[str, ...], ...] = ()
    aiter_calls: tuple[str, ...] = ()
    bound_attrs: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    binding: bool = False
    cache_writes: tuple[CacheWrite, ...] = ()
    cache_view: tuple[str, str] | None = None
    group_quant: GroupQuantStore | None = None

    @property
    def kernel(self) -> str:
        """The kernels by name, for reports."""
        names = [k.name for k in self.kernels] + [k.name for r in self.routes for k in r.kernels]
        names += [c.name for c in self.cache_writes] + ([self.group_quant.name] if self.group_quant else [])
        return " / ".join(dict.fromkeys(names))


def selected(target: Target, module: object) -> bool:
    """Whether ``module``'s globals select the target's aiter branch (see ``Target.selected_by``)."""
    return all(any(getattr(module, name, False) for name in names) for names in target.selected_by)
