"""A memory-faithful double of aiter's HIP RMSNorm kernels.

It indexes storage exactly as the HIP kernel does: ``n = input.size(1)``,
``m = input.numel() // n``, row pitch ``stride(0)`` for every tensor it touches,
a unit last stride assumed, the weight's bytes read in the activation's dtype, and
an empty launch grid (an error) when ``m == 0``.  A read or write past the end of a
tensor's storage raises :class:`MemoryAccessFault`, which stands for the GPU's
"Memory access fault by GPU node"; anything inside the storage is read as is, so a
bad layout gives wrong values.  Like aiter's Python wrapper it rejects a weight
whose length differs from ``input.shape[-1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class MemoryAccessFault(RuntimeError):
    """The emulated kernel touched memory outside a tensor's storage."""


class InvalidConfiguration(RuntimeError):
    """The emulated kernel was launched with an empty grid (zero rows)."""


@dataclass(frozen=True)
class KernelCall:
    """What one kernel launch received: the tensors themselves, by argument name."""

    name: str
    tensors: dict[str, torch.Tensor]


def _flat(storage_of: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The whole storage behind a tensor, as a flat 1-D tensor of ``dtype``."""
    storage = storage_of.untyped_storage()
    count = storage.nbytes() // torch.empty((), dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype, device=storage_of.device).set_(storage, 0, (count,), (1,))


def _row_index(t: torch.Tensor, m: int, n: int, what: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat storage of ``t`` read as ``dtype``, and the (m, n) element indices the kernel touches.

    The kernel takes a typed pointer of the activation's dtype and ``t.stride(0)`` as a
    plain element count, whatever ``t``'s own dtype is.
    """
    flat = _flat(t, dtype)
    base = int(t.storage_offset()) * t.element_size() // flat.element_size()
    pitch = t.stride(0)
    last = base + (m - 1) * pitch + (n - 1)
    if base < 0 or last >= flat.numel() or last < 0:
        raise MemoryAccessFault(
            f"Memory access fault by GPU node (emulated): {what} row {m - 1} at element "
            f"{last} of a storage of {flat.numel()} (shape {tuple(t.shape)}, stride {t.stride()})"
        )
    rows = torch.arange(m, device=t.device).unsqueeze(1) * pitch
    return flat, base + rows + torch.arange(n, device=t.device)


def _weight_as(weight: torch.Tensor, dtype: torch.dtype, n: int) -> torch.Tensor:
    """The first ``n`` elements at the weight's pointer, read as ``dtype``."""
    flat = _flat(weight, dtype)
    start = weight.storage_offset() * weight.element_size() // flat.element_size()
    if start + n > flat.numel():
        raise MemoryAccessFault("Memory access fault by GPU node (emulated): weight read past its storage")
    return flat[start : start + n]


@dataclass
class AiterKernelDouble:
    """Stand-ins for ``aiter.rmsnorm2d_fwd`` and ``aiter.rmsnorm2d_fwd_with_add``.

    ``compute=False`` skips the arithmetic (for overhead benchmarks); ``record=False``
    keeps no call log.
    """

    compute: bool = True
    record: bool = True
    calls: list[KernelCall] = field(default_factory=list)

    def _launch(self, name: str, **tensors: torch.Tensor) -> tuple[int, int]:
        if self.record:
            self.calls.append(KernelCall(name, tensors))
        inp, weight = tensors["input"], tensors["weight"]
        if weight.shape[-1] != inp.shape[-1]:
            raise RuntimeError(f"{name}: weight length {weight.shape[-1]} != hidden {inp.shape[-1]}")
        n = inp.size(1)
        m = inp.numel() // n if n else 0
        if m == 0:
            raise InvalidConfiguration("HIP error: invalid configuration argument (emulated: empty grid)")
        return m, n

    def _normed(self, s: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype, n: int, eps: float) -> torch.Tensor:
        w = _weight_as(weight, dtype, n).to(torch.float32)
        return (s * torch.rsqrt(s.pow(2).mean(dim=-1, keepdim=True) + eps) * w).to(dtype)

    def rmsnorm2d_fwd(
        self, input: torch.Tensor, weight: torch.Tensor, epsilon: float, use_model_sensitive_rmsnorm: int = 0
    ) -> torch.Tensor:
        if not self.compute:
            if self.record:
                self._launch("rmsnorm2d_fwd", input=input, weight=weight)
            return input
        out = torch.empty_like(input)
        m, n = self._launch("rmsnorm2d_fwd", input=input, weight=weight, out=out)
        src, idx = _row_index(input, m, n, "input", input.dtype)
        dst, out_idx = _row_index(out, m, n, "out", input.dtype)
        dst[out_idx] = self._normed(src[idx].to(torch.float32), weight, input.dtype, n, epsilon)
        return out

    def rmsnorm2d_fwd_with_add(
        self,
        out: torch.Tensor,
        input: torch.Tensor,
        residual_in: torch.Tensor,
        residual_out: torch.Tensor,
        weight: torch.Tensor,
        epsilon: float,
        use_model_sensitive_rmsnorm: int = 0,
    ) -> None:
        names = {"out": out, "input": input, "residual_in": residual_in, "residual_out": residual_out}
        if not self.compute:
            if self.record:
                self._launch("rmsnorm2d_fwd_with_add", weight=weight, **names)
            return
        m, n = self._launch("rmsnorm2d_fwd_with_add", weight=weight, **names)
        dt = input.dtype
        src, idx = _row_index(input, m, n, "input", dt)
        res, res_idx = _row_index(residual_in, m, n, "residual_in", dt)
        dst, out_idx = _row_index(out, m, n, "out", dt)
        rdst, rout_idx = _row_index(residual_out, m, n, "residual_out", dt)
        s = src[idx].to(torch.float32) + res[res_idx].to(torch.float32)
        rdst[rout_idx] = s.to(dt)
        dst[out_idx] = self._normed(s, weight, input.dtype, n, epsilon)

    def layernorm2d_fwd(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError("the emulated aiter provides RMSNorm kernels only")

    def reset(self) -> None:
        self.calls.clear()
