"""A kernel launch as its contract says the kernel reads memory: the double's only way to touch a tensor.

Every read goes through a :class:`~aiter_norm_guard.kernels.form.Kernel` declaration, the
same one the guard derives its checks from: ``n`` and ``m`` as the contract takes them, rows
through the contract's pitch, vectors as ``n`` elements of the contract's dtype from their
pointer.  So the double is exactly as strict as the contract, and the contract is the
kernel's source.
"""

from __future__ import annotations

import torch

from aiter_norm_guard.emulation.memory import InvalidConfiguration, KernelCrash, MemoryAccessFault, rows, vector
from aiter_norm_guard.kernels.form import (
    AS_ACTIVATION,
    EMPTY_GRID_FAULTS,
    FLAT,
    INPUT_PITCH,
    N_SIZE1,
    N_WEIGHT,
    PITCH,
    PITCH_LAST2,
    Kernel,
)

Tensor = torch.Tensor


class Launch:
    """One launch of ``kernel`` on ``inp`` (its first row argument, or the row argument ``arg``):
    ``m``, ``n`` and the reads.  ``m``: the row count the kernel takes from another tensor (the
    first of several pairs), if not ``inp``'s own."""

    def __init__(
        self,
        kernel: Kernel,
        inp: Tensor,
        weight: Tensor | None = None,
        arg: str | None = None,
        m: int | None = None,
        **tensors: Tensor | None,
    ) -> None:
        self.kernel = kernel
        self.dtype = inp.dtype
        spec = kernel.rows[0][1] if arg is None else kernel.row(arg)
        self._device(inp, weight, *tensors.values())
        if kernel.dtypes and str(inp.dtype).removeprefix("torch.") not in kernel.dtypes:
            raise RuntimeError(f"{kernel.name}: not support output type: {inp.dtype} (emulated TORCH_CHECK)")
        if kernel.rank2 and inp.dim() != 2:
            raise RuntimeError(
                f"{kernel.name}: {arg or kernel.rows[0][0]} must be 2-D, got {tuple(inp.shape)} "
                "(emulated check, before any launch)"
            )
        if spec.n == N_SIZE1:
            n = inp.size(1)  # size(1) of a 1-D tensor raises, as at::Tensor::size does
        elif spec.n == N_WEIGHT:
            assert weight is not None
            n = weight.numel()
        else:
            n = inp.size(-1)
        if n == 0:
            raise KernelCrash(f"{kernel.name}: Floating point exception (emulated): m = numel / n with n == 0")
        if kernel.max_n is not None and n > kernel.max_n:
            raise RuntimeError(f"{kernel.name}: not support n: {n} (emulated TORCH_CHECK)")
        self.n, self.m = n, inp.numel() // n if m is None else m
        self.pitch = inp.stride(0) if inp.dim() else n
        if self.m == 0 and kernel.zero_rows == EMPTY_GRID_FAULTS:
            raise InvalidConfiguration(f"{kernel.name}: HIP error: invalid configuration argument (emulated)")

    def _device(self, *tensors: Tensor | None) -> None:
        if self.kernel.device and any(t is not None and not t.is_cuda for t in tensors):
            raise MemoryAccessFault(
                f"Memory access fault by GPU node (emulated): {self.kernel.name} was given a host pointer"
            )

    @property
    def empty(self) -> bool:
        return self.m == 0

    def index(self, name: str, t: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Flat storage of ``t`` and the (m, n) element indices the kernel touches for argument ``name``."""
        spec = self.kernel.row(name)
        typed = (self.dtype if spec.dtype == AS_ACTIVATION else t.dtype) if dtype is None else dtype
        if spec.pitch == PITCH:
            return rows(t, self.m, self.n, name, typed)
        if spec.pitch == PITCH_LAST2:
            return rows(t, self.m, self.n, name, typed, pitch=t.stride(-2) if t.dim() > 1 else self.n)
        if spec.pitch == INPUT_PITCH:
            return rows(t, self.m, self.n, name, typed, pitch=self.pitch)
        if spec.pitch == FLAT:
            return rows(t, self.m, self.n, name, typed, pitch=self.n)
        if t.dim() != 2:  # both strides honoured: only a 2-D tensor has them
            raise ValueError(f"{self.kernel.name}: {name} must be 2-D, got {tuple(t.shape)}")
        if any(size > 1 and stride <= 0 for size, stride in zip(t.shape, t.stride(), strict=True)):
            raise MemoryAccessFault(
                f"{self.kernel.name}: {name} stride {t.stride()} breaks tl.assume(stride > 0): "
                "undefined behaviour (emulated as a fault)"
            )
        return rows(t, self.m, self.n, name, typed, pitch=t.stride(0), col=t.stride(1))

    def read(self, name: str, t: Tensor) -> Tensor:
        """Argument ``name``'s (m, n) values, in fp32."""
        mem, idx = self.index(name, t)
        return mem[idx].to(torch.float32)

    def write(self, name: str, t: Tensor, values: Tensor) -> None:
        mem, idx = self.index(name, t, t.dtype if self.kernel.row(name).dtype != AS_ACTIVATION else None)
        mem[idx] = values.to(mem.dtype)

    def vector(self, name: str, t: Tensor) -> Tensor:
        """Vector ``name``'s ``n`` elements as the kernel reads them, in fp32."""
        spec = self.kernel.vector(name)
        dtype = self.dtype if spec.dtype == AS_ACTIVATION else t.dtype
        what = f"{self.kernel.name}: {name}"
        assert "dtype" not in spec.checked or t.dtype == self.dtype, f"{what} dtype must match the input's"
        assert "length" not in spec.checked or t.numel() == self.n, f"{what} length must be {self.n}"
        assert "contiguous" not in spec.checked or t.is_contiguous(), f"{what} must be contiguous"
        if spec.unit_stride:
            return vector(t, self.n, dtype, name).to(torch.float32)
        mem, idx = rows(t.unsqueeze(0), 1, self.n, name, dtype, pitch=0, col=t.stride(0))
        return mem[idx][0].to(torch.float32)
