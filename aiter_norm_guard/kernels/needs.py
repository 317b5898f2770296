"""What a caller must make true before a kernel runs, derived from the kernel's contract.

:func:`needs` reads :class:`~aiter_norm_guard.kernels.form.Kernel` declarations and gives
the union over every kernel an entry may reach: the guard checks exactly these (less what
the release already does itself), never more.  Pure: no torch, no sglang.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from aiter_norm_guard.kernels.form import (
    AS_ACTIVATION,
    EMPTY_GRID_FAULTS,
    FLAT,
    INPUT_PITCH,
    PITCH,
    PITCH_LAST2,
    STRIDES,
    Kernel,
)

#: What a row tensor's layout must be.
ROWS = "rows"  # 2-D, unit last stride, rows through stride(0): contiguous (row-strided views where allowed)
CONTIGUOUS = "contiguous"  # any rank, contiguous, last dimension the hidden size (a flat read)
ANY = "any"  # the kernel honours every stride; a wrong rank fails in Python before any launch

#: The requirements by name: what ``upstream`` tables say a release already does, and what the
#: guard reports it checks (doctor, status).
X_LAYOUT = "x layout"
ROWS_LAYOUT = "residual layout"
SAME_ROWS = "residual shape and dtype"
ZERO_ROWS = "zero rows"
WEIGHT_DTYPE = "weight dtype"
WEIGHT_LENGTH = "weight length"
WEIGHT_STRIDE = "weight stride"
HOST = "host tensors"
#: Partial layouts a release may give ``x`` (upstream tables): only a 2-D ``x`` made contiguous
#: (a rank-3 one keeps its rank), or ``x`` reshaped to ``(-1, hidden)`` keeping strides where a view exists.
X_CONTIGUOUS_2D = "x contiguous (2-D only)"
X_RESHAPED = "x reshaped to rows (strides kept)"
ALL = (X_LAYOUT, ROWS_LAYOUT, SAME_ROWS, ZERO_ROWS, WEIGHT_DTYPE, WEIGHT_LENGTH, WEIGHT_STRIDE, HOST)


class Needs(NamedTuple):
    """The union of what an entry's kernels need of their caller."""

    layout: str  # ROWS, CONTIGUOUS or ANY
    row_strided: bool  # under ROWS: a 2-D view with unit last stride and a wider pitch is read right
    same_rows: bool  # other row tensors are read with x's m and n (and dtype): they must match x
    nonempty: bool  # an empty grid faults
    weight_dtype: bool  # a vector is reinterpreted as the activation's dtype
    weight_contiguous: bool  # a vector is read one element apart from its pointer
    device: bool  # pointers are dereferenced on the device
    positive_strides: bool = False  # under ANY: strides assumed positive (Triton's tl.assume): no expanded rows
    rows_dtype: bool = True  # the other row tensors are read as the activation's dtype (Triton: their own)


def _layout(kernel: Kernel) -> str:
    pitches = {r.pitch for _, r in kernel.rows}
    if FLAT in pitches:
        return CONTIGUOUS
    return ROWS if pitches & {PITCH, PITCH_LAST2, INPUT_PITCH} else ANY


def needs(*kernels: Kernel) -> Needs:
    """What every one of ``kernels`` needs of its caller (the strictest of them for each field)."""
    layouts = {_layout(k) for k in kernels}
    layout = CONTIGUOUS if CONTIGUOUS in layouts else ROWS if ROWS in layouts else ANY
    vectors = [v for k in kernels for _, v in k.vectors]
    return Needs(
        layout=layout,
        row_strided=layout == ROWS and not any(r.pitch == INPUT_PITCH for k in kernels for _, r in k.rows),
        same_rows=any(k.same_rows for k in kernels),
        nonempty=any(k.zero_rows == EMPTY_GRID_FAULTS for k in kernels),
        weight_dtype=any(v.dtype == AS_ACTIVATION and "dtype" not in v.checked for v in vectors),
        weight_contiguous=any(v.unit_stride and "contiguous" not in v.checked for v in vectors),
        device=any(k.device for k in kernels),
        positive_strides=any(r.pitch == STRIDES for k in kernels for _, r in k.rows),
        rows_dtype=any(r.dtype == AS_ACTIVATION for k in kernels for _, r in k.rows[1:]),
    )


#: How a normalized tensor's own layout is checked per call (``Checks.x``, ``Checks.rows``).
X_ROWS = "rows"  # contiguous, or (``Checks.row_strided``) rows through stride(0), unit last stride, no overlap
X_UNIT_LAST = (
    "unit last stride"  # elements one apart; rows anywhere (read through stride(0), or reshaped by the release)
)
X_CONTIGUOUS = "contiguous"  # read flat
X_POSITIVE = "positive strides"  # every stride honoured, assumed positive: no expanded rows
X_ANY = "any"  # the kernel, or the release before it, takes any layout
#: The release's own returns before any kernel that the guard lets happen (``Checks.exits``).
EXITS = (ZERO_ROWS, HOST, WEIGHT_DTYPE)


class Checks(NamedTuple):
    """What a guard checks per call of one kind (``x`` alone, or with row tensors): its kernels' needs less
    what the release does itself.  Computed once per guard; the fast path, the slow path and the report all
    read it."""

    x: str  # the first group's rows (X_*)
    rank2: bool  # 2-D only (else: the kernel or the release reads rows of any rank)
    row_strided: bool  # under X_ROWS: a row-strided view is read right
    rows: str  # the row tensors' layout (X_*)
    nonempty: bool  # an empty grid faults
    weight_dtype: bool
    weight_stride: bool
    host_x: bool
    host_others: bool  # the vectors, the row tensors, the other groups
    same_rows: bool  # row tensors and other groups: read with x's rows (and, ``rows_dtype``, its dtype)
    rows_dtype: bool
    flattened: bool  # the release reshapes x, the residual and the summed tensors to rows itself
    not_2d: bool  # several groups, read with n = size(1): another rank is refused, not reshaped
    reshape: bool  # one group read as rows: the guard may hand x over as ``(-1, n)`` rows (else only its layout)
    exits: frozenset[str]  # the release's own returns before any kernel (EXITS)

    def names(self) -> tuple[str, ...]:
        """The requirements checked, by name, in :data:`ALL`'s order (for doctor and status)."""
        on = {
            X_LAYOUT: self.x != X_ANY or self.rank2,
            ROWS_LAYOUT: self.rows != X_ANY,
            SAME_ROWS: self.same_rows,
            ZERO_ROWS: self.nonempty and ZERO_ROWS not in self.exits,
            WEIGHT_DTYPE: self.weight_dtype,
            WEIGHT_LENGTH: True,
            WEIGHT_STRIDE: self.weight_stride,
            HOST: self.host_x or self.host_others,
        }
        return tuple(name for name in ALL if on[name])


def checks(needs: Needs, done: Collection[str], with_rows: bool, row_stride: bool = False, groups: int = 1) -> Checks:
    """The per-call checks for calls without (or, ``with_rows``, with) row tensors, when the release already does
    ``done`` itself; ``row_stride``: row-strided views allowed where the kernels read them; ``groups``: how many
    normalized tensors the entry has (several: never reshaped, each 2-D)."""
    several = groups > 1
    layout = needs.layout
    own = {ROWS: X_UNIT_LAST if several else X_ROWS, CONTIGUOUS: X_CONTIGUOUS}.get(layout, X_ANY)
    if layout == ANY and needs.positive_strides:
        own = X_POSITIVE
    x, rank2 = own, several or layout == ROWS
    if X_LAYOUT in done:
        x, rank2 = X_ANY, several
    elif X_RESHAPED in done:
        x, rank2 = X_UNIT_LAST, False
    elif X_CONTIGUOUS_2D in done and layout == ROWS:
        x = X_ANY
    if layout == ANY or ROWS_LAYOUT in done:
        rows = own if layout == ANY else X_ANY
    else:
        rows = own if several else X_CONTIGUOUS
    return Checks(
        x=x,
        rank2=rank2,
        row_strided=row_stride and not with_rows and needs.row_strided and x == X_ROWS,
        rows=rows,
        nonempty=needs.nonempty,
        weight_dtype=needs.weight_dtype and WEIGHT_DTYPE not in done,
        weight_stride=needs.weight_contiguous and WEIGHT_STRIDE not in done,
        host_x=needs.device and HOST not in done,
        host_others=needs.device,
        same_rows=needs.same_rows,
        rows_dtype=needs.rows_dtype or not several,  # an RMSNorm's residual: always x's dtype, as its fallback's
        flattened=ROWS_LAYOUT in done,
        not_2d=several and layout == ROWS,
        reshape=layout == ROWS and not several,
        exits=frozenset(done) & frozenset(EXITS),
    )


def still_needed(
    needs: Needs, alone: Collection[str] = (), with_rows: Collection[str] = (), groups: int = 1
) -> tuple[str, ...]:
    """The requirements a caller still checks when the release already does ``alone`` (calls without a
    residual) and ``with_rows`` (calls with one) itself: those of either kind of call."""
    return named(checks(needs, alone, False, groups=groups), checks(needs, with_rows, True, groups=groups))


def named(*kinds: Checks) -> tuple[str, ...]:
    """The requirements checked for any of these kinds of call, by name, in :data:`ALL`'s order."""
    on = {name for c in kinds for name in c.names()}
    return tuple(name for name in ALL if name in on)
