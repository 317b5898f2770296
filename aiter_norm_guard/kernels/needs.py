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

    def names(self) -> tuple[str, ...]:
        """The requirements by name, in :data:`ALL`'s order (weight length: always)."""
        on = {
            X_LAYOUT: self.layout != ANY,
            ROWS_LAYOUT: self.layout != ANY,
            SAME_ROWS: self.same_rows,
            ZERO_ROWS: self.nonempty,
            WEIGHT_DTYPE: self.weight_dtype,
            WEIGHT_LENGTH: True,
            WEIGHT_STRIDE: self.weight_contiguous,
            HOST: self.device,
        }
        return tuple(name for name in ALL if on[name])


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


def still_needed(needs: Needs, alone: Collection[str] = (), with_rows: Collection[str] = ()) -> tuple[str, ...]:
    """The requirements a caller still checks when the release already does ``alone`` (calls
    without a residual) and ``with_rows`` (calls with one) itself.  A release's host check reads
    ``x`` alone: the weights' and the residual's devices stay the caller's to check."""
    return tuple(name for name in needs.names() if name not in alone or name not in with_rows or name == HOST)
