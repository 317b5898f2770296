"""The form of a kernel contract: how one aiter kernel reads each tensor it is given.

A :class:`Kernel` is written down once per kernel, from the kernel's own source (cited in
``source``), and read by both sides: the guard derives what it must check from it
(:func:`aiter_norm_guard.kernels.needs.needs`), and the test double indexes memory by it
(``aiter_norm_guard.emulation``).  Nothing here imports torch.
"""

from __future__ import annotations

from typing import NamedTuple

#: How a row tensor's hidden size ``n`` is taken (``m`` is then ``numel // n``).
N_SIZE1 = "size(1)"  # HIP kernels: ``input.size(1)``; a rank-3 tensor is read with the wrong n
N_LAST = "size(-1)"  # CK kernels and Triton wrappers: the last dimension
N_WEIGHT = "weight.numel()"  # the custom all-reduce: the weight's length, whatever the input's shape
#: How rows are found in memory.
PITCH = "stride(0)"  # row i at data_ptr + i * stride(0), its elements one apart (unit last stride assumed)
INPUT_PITCH = "the input's stride(0)"  # as PITCH, but with the first row argument's pitch, not its own
PITCH_LAST2 = "stride(-2)"  # as PITCH, through stride(-2): a >= 3-D tensor whose rows do not collapse is misread
STRIDES = "strides"  # both strides honoured (Triton kernels given stride(0) and stride(1)), assumed positive
FLAT = "flat"  # numel elements from data_ptr, one apart (a flat copy: contiguity assumed)
#: How a vector (weight, bias) is typed when read.
AS_ACTIVATION = "activation"  # the pointer reinterpreted as the activation's dtype, no check
OWN = "own"  # loaded in its own dtype and converted (Triton ``tl.load(...).to(fp32)``)
#: What a launch with zero rows does.
EMPTY_GRID_FAULTS = "invalid configuration argument"  # a HIP launch of a (0, ...) grid
EMPTY_GRID_SKIPPED = "skipped"  # Triton's launcher returns without launching an empty grid


class Rows(NamedTuple):
    """An activation-like tensor the kernel reads as ``m`` rows of ``n`` elements."""

    n: str = N_SIZE1
    pitch: str = PITCH
    dtype: str = AS_ACTIVATION  # AS_ACTIVATION: read as the activation's dtype; OWN: its own


class Vector(NamedTuple):
    """A weight or bias: ``n`` elements read from its pointer (never more, never fewer)."""

    dtype: str = AS_ACTIVATION
    unit_stride: bool = True  # read one element apart from data_ptr: its own strides ignored
    checked: tuple[str, ...] = ()  # what the kernel checks itself: "dtype", "length", "contiguous"


class Kernel(NamedTuple):
    """One aiter kernel (or one route of an aiter entry point) as its source reads memory.

    ``rows`` / ``vectors`` name the kernel's arguments; ``same_rows`` lists row arguments the
    kernel indexes with the first one's ``m`` and ``n`` without checking their shapes.
    ``dtypes``: activation dtypes it accepts (others raise); ``max_n``: the largest ``n`` it
    takes (larger raises).  ``rank2``: its Python wrapper unpacks ``m, n = x.shape`` (another
    rank raises there, before any launch; the double checks it at launch).  ``device``: it dereferences
    device pointers.
    """

    name: str
    source: str
    rows: tuple[tuple[str, Rows], ...]
    vectors: tuple[tuple[str, Vector], ...]
    zero_rows: str = EMPTY_GRID_FAULTS
    same_rows: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ("bfloat16", "float16")
    max_n: int | None = None
    rank2: bool = False
    device: bool = True

    def with_residual(self, name: str, source: str, residual: Rows | None = None, input: Rows | None = None) -> Kernel:
        """The same kernel with a residual: ``residual_in`` / ``residual_out`` after the input (read as ``input``
        where given), read as ``residual`` (default: as the input) with the input's ``m`` and ``n``, their shapes
        never compared."""
        first = (self.rows[0][0], input or self.rows[0][1])
        read = residual or first[1]
        rows = (first, ("residual_in", read), ("residual_out", read), *self.rows[1:])
        return self._replace(name=name, source=source, rows=rows, same_rows=("residual_in", "residual_out"))

    def row(self, name: str) -> Rows:
        return dict(self.rows)[name]

    def vector(self, name: str) -> Vector:
        return dict(self.vectors)[name]


#: How a KV-cache write addresses slot ``s``, head ``h``, element ``i`` (``block_size`` 0, one slot per block).
SLOT_HEAD_CONTIGUOUS = "(s * Hk + h) * D + i"  # the cache must be contiguous (AITER_CHECK): its strides never read
SLOT_HEAD_STRIDES = "s * stride(1) + h * stride(2) + i"  # read as (block, token, head): a 3-D cache is misread


class CacheRead(NamedTuple):
    """How the aiter builds in ``builds`` address the K / V cache (``source`` cites the host code)."""

    builds: str
    address: str
    source: str


class CacheWrite(NamedTuple):
    """A fused q / k RMSNorm + RoPE + KV-cache write, as its host code and kernel read their arguments.

    ``qkv`` is read flat as ``(T, Hq + Hk + Hv, D)`` rows of ``head_sizes``; both norm weights as ``D``
    elements of the activation's dtype (never checked); ``positions`` (of ``positions_rank``) and the slot
    mapping as int64 (a slot < 0 is skipped); the scales as one float each, on the host; ``zero_rows``: what
    ``T == 0`` does.  ``cache_reads``: per aiter build, how K / V land in the cache; ``cache_view``: the
    zero-copy view of a contiguous ``(slots, Hk, D)`` buffer that every build in ``cache_reads`` reads right.
    """

    name: str
    source: str
    positions_rank: int
    head_sizes: tuple[int, ...]
    cache_reads: tuple[CacheRead, ...]
    cache_view: str = "unsqueeze(1)"
    dtypes: tuple[str, ...] = ("bfloat16", "float16")
    zero_rows: str = EMPTY_GRID_FAULTS


class GroupQuantStore(NamedTuple):
    """A fused q / k RMSNorm + RoPE + group-quant store into caller (or wrapper) allocated buffers, no KV cache.

    Every input pointer is reinterpreted as ``element_type``'s dtype; the token count ``T`` is ``tokens`` and the
    other row inputs are indexed with it unchecked (``token_rows``); ``vectors`` are the norm weights as read;
    ``zero_rows``: what ``T == 0`` does; ``returns``: what the Python wrapper returns (the buffers, allocated
    where ``None``).  ``misreads``: per unchecked input, the kernel's line that reads it wrong.
    """

    name: str
    source: str
    tokens: str
    element_type: str
    token_rows: tuple[str, ...]
    vectors: tuple[tuple[str, Vector], ...]
    head_dims: tuple[int, ...]
    rot_dim: int
    returns: tuple[str, ...]
    misreads: tuple[tuple[str, str], ...]
    zero_rows: str = EMPTY_GRID_FAULTS
    dtypes: tuple[str, ...] = ("bfloat16", "float16", "float32")
