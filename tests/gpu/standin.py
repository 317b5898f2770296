"""sglang 0.5.10's ``RMSNorm`` reduced to its aiter path, for the GPU machine.

The GPU machine has no package registry and the pinned sglang overlay is far larger than
what can be carried, so this module stands in for ``sglang.srt.layers.layernorm``: the
same class name, the same ``forward_aiter(x, residual, post_residual_addition)`` calling
aiter's functions with the same arguments, ``forward_native`` with the same arithmetic,
and dispatch through ``self._forward_method`` bound at construction.  The guard patches
it through its real machinery (a target naming this module).
"""

from __future__ import annotations

import torch
from torch import nn

import aiter_triton

rms_norm = torch.ops.aiter_double.rmsnorm2d_fwd
fused_add_rms_norm = torch.ops.aiter_double.rmsnorm2d_fwd_with_add


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps
        self.hidden_size = hidden_size
        self._forward_method = self.forward_aiter

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self._forward_method(*args, **kwargs)

    def forward_aiter(self, x, residual=None, post_residual_addition=None):  # type: ignore[no-untyped-def]
        if residual is not None:
            residual_out = torch.empty_like(x)
            output = torch.empty_like(x)
            if post_residual_addition is not None:
                residual = residual + post_residual_addition
            fused_add_rms_norm(output, x, residual, residual_out, self.weight.data, self.variance_epsilon)
            return output, residual_out
        return rms_norm(x, self.weight.data, self.variance_epsilon)

    aiter_body = forward_aiter  # the same function object, under a name the guard does not patch

    def forward_inline_fix(self, x, residual=None, post_residual_addition=None):  # type: ignore[no-untyped-def]
        """The upstream inline fix (0.5.23's canonicalization) as the baseline to beat."""
        original_shape = x.shape
        residual_shape = residual.shape if residual is not None else original_shape
        needs_reshape = x.dim() != 2
        if needs_reshape:
            x = x.contiguous().reshape(-1, original_shape[-1])
            if residual is not None:
                residual = residual.contiguous().reshape(-1, residual_shape[-1])
        elif not x.is_contiguous():
            x = x.contiguous()
        out = RMSNorm.aiter_body(self, x, residual, post_residual_addition)  # unpatched, as upstream inline
        if not needs_reshape:
            return out
        if residual is not None:
            return out[0].reshape(original_shape), out[1].reshape(residual_shape)
        return out.reshape(original_shape)

    def forward_native(self, x, residual=None, post_residual_addition=None):  # type: ignore[no-untyped-def]
        if not x.is_contiguous():
            x = x.contiguous()
        orig_dtype = x.dtype
        x = x.to(torch.float32)
        if residual is not None:
            x = x + residual.to(torch.float32)
            if post_residual_addition is not None:
                x = x + post_residual_addition.to(torch.float32)
            residual = x.to(orig_dtype)
        variance = x.pow(2).mean(dim=-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        x = (x * self.weight).to(orig_dtype)
        return x if residual is None else (x, residual)


assert aiter_triton  # the custom ops above are registered by importing it
