"""Double of aiter's ``fused_qk_norm_rope_group_quant`` (DeepSeek-V4's two-pool fp8 store), from its contract.

As strict as the kernel, never kinder (:mod:`aiter_norm_guard.kernels.group_quant_store`): the wrapper's asserts
and allocations, the host's AITER_CHECKs (RuntimeError), then memory read as the kernel reads it: every input
pointer as kv's dtype (q, k_weight, q_weight, cos / sin), k_weight as head_dim elements from its pointer whatever
its strides, kv's rows at ``token * kv.stride(0)`` for every token of q's T (past kv's storage:
:class:`MemoryAccessFault`), positions as T int64 at its pointer, and T == 0 an empty grid
(:class:`InvalidConfiguration`).  What it writes is deterministic in the inputs as read, not fp8-bit-exact: the
normed K / Q, RoPE'd (GPT-J pairs) on the trailing rot_dim, the NoPE part scaled per 64-group by an e8m0 power of
two and cast to the buffer's dtype, the scale bytes (x2) after the NoPE bytes.
"""

from __future__ import annotations

import torch

from aiter_norm_guard.emulation.kernel import AiterKernelDouble, rms
from aiter_norm_guard.emulation.kernel import aiter_check as _check
from aiter_norm_guard.emulation.memory import InvalidConfiguration, MemoryAccessFault, at, vector

Tensor = torch.Tensor
FP8 = torch.float8_e4m3fnuz  # the emulated aiter's ``dtypes.fp8``
_GROUP = 64


def _read(t: Tensor, dtype: torch.dtype, index: Tensor, what: str) -> Tensor:
    """Elements of ``dtype`` at ``t``'s pointer plus ``index``, whatever ``t``'s own dtype."""
    mem, index = at(t, dtype, index, f"{what} read past its storage")
    return mem[index]


def _write(t: Tensor, index: Tensor, values: Tensor, what: str) -> None:
    mem, index = at(t, values.dtype, index, f"{what} written past its storage")
    mem[index] = values


def _rope(x: Tensor, cos: Tensor, sin: Tensor, rot: int, neox: bool) -> Tensor:
    out = x.clone()
    pe = x[..., -rot:]
    if neox:
        x0, x1 = pe[..., : rot // 2], pe[..., rot // 2 :]
        out[..., -rot:] = torch.cat([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1)
    else:
        x0, x1 = pe[..., 0::2], pe[..., 1::2]
        rotated = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1)
        out[..., -rot:] = rotated.flatten(-2)
    return out


def _packed(x: Tensor, rot: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``x`` (.., head_dim) fp32 as the 1-byte entry's NoPE values of ``dtype`` and its (x2) e8m0 scale bytes."""
    nope = x[..., :-rot]
    groups = nope.unflatten(-1, (-1, _GROUP))
    amax = groups.abs().amax(-1, keepdim=True).clamp_min(2.0**-126)
    exp = torch.ceil(torch.log2(amax / 240.0))
    values = (groups / torch.exp2(exp)).flatten(-2).to(dtype)
    scales = (exp.squeeze(-1) + 127).clamp(0, 255).to(torch.uint8).repeat_interleave(2, -1)
    return values, scales


class GroupQuantStoreDouble:
    """``fused_qk_norm_rope_group_quant``, logging into ``kernels``' call list."""

    def __init__(self, kernels: AiterKernelDouble) -> None:
        self.kernels = kernels

    def fused_qk_norm_rope_group_quant(
        self,
        q: Tensor,
        kv: Tensor,
        k_weight: Tensor,
        positions: Tensor,
        cos_cache: Tensor,
        sin_cache: Tensor,
        eps: float,
        is_neox: bool = False,
        q_out_dtype: torch.dtype = torch.bfloat16,
        q_nope_scale_buff: Tensor | None = None,
        q_rope_buff: Tensor | None = None,
        k_nope_scale_buff: Tensor | None = None,
        k_rope_buff: Tensor | None = None,
        q_weight: Tensor | None = None,
        quant_group_size: int = 64,
        scale_dtype: str = "e8m0",
        swa_nope_scale_buff: Tensor | None = None,
        swa_rope_buff: Tensor | None = None,
        swa_block_tables: Tensor | None = None,
        swa_dest_row: Tensor | None = None,
        swa_block_size: int | None = None,
        batch_id_per_token: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        # the Python wrapper (:430-480)
        assert q.dim() == 3, "q must be [num_tokens, num_heads, head_dim]"
        t, h, d = q.shape
        kv_heads = kv.shape[1] if kv.dim() == 3 else 1
        rot = cos_cache.shape[-1] * 2
        q_fp8 = (q_nope_scale_buff.dtype if q_nope_scale_buff is not None else q_out_dtype) == FP8
        if q_fp8:
            assert quant_group_size in (32, 64), f"quant_group_size must be one of {{32, 64}}, got {quant_group_size}"
            assert (d - rot) % quant_group_size == 0, "NoPE size (head_dim - rot_dim) must be divisible by group"
        if q_nope_scale_buff is None:
            q_nope_scale_buff = torch.empty((t, h, d), dtype=q_out_dtype, device=q.device)
        if q_fp8 and q_rope_buff is None:
            q_rope_buff = torch.empty((t, h, rot), dtype=kv.dtype, device=q.device)
        if not q_fp8:
            q_rope_buff = None
        if k_nope_scale_buff is None:
            k_nope_scale_buff = torch.empty((t, kv_heads, d), dtype=FP8, device=q.device)
        if k_rope_buff is None:
            k_rope_buff = torch.empty((t, kv_heads, rot), dtype=kv.dtype, device=q.device)
        out = (q_nope_scale_buff, q_rope_buff, k_nope_scale_buff, k_rope_buff)
        swa = (swa_nope_scale_buff, swa_rope_buff, swa_block_tables, swa_dest_row, batch_id_per_token)
        if self.kernels._log(
            "fused_qk_norm_rope_group_quant",
            q=q,
            kv=kv,
            k_weight=k_weight,
            positions=positions,
            q_nope_scale_buff=q_nope_scale_buff,
            k_nope_scale_buff=k_nope_scale_buff,
            k_rope_buff=k_rope_buff,
        ):
            self._host(q, kv, k_weight, cos_cache, q_weight, quant_group_size, q_rope_buff, out, swa, swa_block_size)
            self._kernel(q, kv, k_weight, positions, cos_cache, sin_cache, eps, is_neox, q_weight, out, swa)
        return out

    @staticmethod
    def _host(q, kv, k_weight, cos, q_weight, group, q_rope, out, swa, block_size) -> None:  # type: ignore[no-untyped-def]
        """The host code's checks (.cu:5664-5907), in its order."""
        q_out, _, k_nope, _ = out
        d, rot = kv.size(-1), cos.size(-1) * 2
        _check(q.dim() == 3, "q must be 3D [num_tokens, num_heads, head_dim]")
        _check(q.size(-1) == d, "q head_dim must equal kv head_dim")
        _check(q_out.size(2) == d, "q_nope_scale_buff last dim must match head_dim")
        _check(k_weight.size(0) == d, "k_weight size must match head_dim")
        _check(kv.stride(-1) == 1, "kv stride(-1) must be equal to 1")
        if q_weight is not None:
            _check(q_weight.size(0) == d, "q_weight size must match head_dim")
            _check(q_weight.dtype == q.dtype, "q_weight dtype must match q dtype")
            _check(q_weight.stride(-1) == 1, "q_weight must be contiguous in last dim")
        if q_out.dtype == FP8:
            _check(group in (32, 64), f"quant_group_size must be one of {{32, 64}}, got {group}")
            _check((d - rot) % group == 0, "NoPE size (head_dim - rot_dim) must be divisible by quant_group_size")
            _check(q_rope is not None, "q_rope_buff (rotated Q-PE bf16 buffer) is required when Q is fp8")
        _check((kv.size(1) if kv.dim() == 3 else 1) == 1, "fused_qk_norm_rope_cache_quant requires num_kv_heads == 1")
        _check(k_nope.dtype in (torch.float32, torch.float16, torch.bfloat16, FP8), "kv cache data type")
        nope, rope, tables, dest, bid = swa
        if nope is not None:
            t = q.size(0)
            _check((tables is not None) != (dest is not None), "SWA write needs exactly one of tables / dest_row")
            _check(rope is not None and bid is not None, "SWA write requires swa buffers and batch_id_per_token")
            _check(nope.dtype == k_nope.dtype, "swa_nope_scale_buff dtype must match k_nope_scale_buff")
            _check(rope.dtype == out[3].dtype, "swa_rope_buff dtype must match k_rope_buff")
            _check(bid.dtype == torch.int32, "batch_id_per_token must be int32")
            _check(bid.size(0) >= t, "batch_id_per_token length must be >= num_tokens")
            _check(nope.dim() == 2 and rope.dim() == 2, "SWA buffers must be 2D")
            _check(nope.size(0) == rope.size(0), "swa_nope_scale_buff and swa_rope_buff must share num_rows")
            _check(nope.stride(1) == 1 and rope.stride(1) == 1, "SWA buffers must be contiguous in last dim")
            if tables is not None:
                _check((block_size or 0) > 0, "paged SWA write needs swa_block_size > 0")
                _check(tables.dim() == 2 and tables.dtype == torch.int32, "swa_block_tables must be 2D int32")
                _check(tables.stride(1) == 1, "swa_block_tables must be contiguous in last dim")
            else:
                _check(dest.dim() == 1 and dest.dtype == torch.int32, "swa_dest_row must be 1D int32")
                _check(dest.stride(0) == 1, "swa_dest_row must be contiguous")
                _check(dest.size(0) >= t, "swa_dest_row length must be >= num_tokens")
        _check(rot == 64 and d <= 512, "only supports head_dim<=512 and rot_dim=64")
        _check(d == 512, f"Unsupported head_dim={d}. Supported: 512")

    def _kernel(self, q, kv, k_weight, positions, cos, sin, eps, neox, q_weight, out, swa) -> None:  # type: ignore[no-untyped-def]
        q_out, q_rope, k_nope, k_rope = out
        t, h = q.size(0), q.size(1)
        d, rot, half = kv.size(-1), cos.size(-1) * 2, cos.size(-1)
        if t == 0:
            raise InvalidConfiguration("HIP error: invalid configuration argument (emulated: an empty grid)")
        tensors = [q, kv, k_weight, positions, cos, sin, *(x for x in (*out, *swa, q_weight) if x is not None)]
        if not all(x.is_cuda for x in tensors):
            raise MemoryAccessFault("Memory access fault by GPU node (emulated): a host tensor given to the kernel")
        dt = kv.dtype  # KV_T: every input pointer is read as kv's dtype (.cu:5585-5596)
        tok = torch.arange(t)
        i = torch.arange(d)
        pos = _read(positions, torch.int64, tok, "positions")  # :5191 positions[token_idx]
        rope_pos = pos.clamp(0, cos.size(0) - 1)  # :5192-5194
        at = rope_pos.unsqueeze(1) * half + torch.arange(half)
        c, s = _read(cos, dt, at, "cos_cache").float(), _read(sin, dt, at, "sin_cache").float()
        # K wave: kv row token * stride(0) (:5203), k_weight head_dim elements from its pointer (:5214)
        x_kv = _read(kv, dt, tok.unsqueeze(1) * kv.stride(0) + i, "kv").float()
        w_k = vector(k_weight, d, dt, "k_weight").float()
        k = _rope(rms(x_kv, w_k, eps).to(dt).float(), c, s, rot, neox)
        # Q waves: row token * stride(0) + head * stride(1), elements one apart (:5713-5714)
        q_rows = tok.view(-1, 1, 1) * q.stride(0) + torch.arange(h).view(1, -1, 1) * q.stride(1)
        x_q = _read(q, dt, q_rows + i, "q")
        w_q = vector(q_weight, d, dt, "q_weight").float() if q_weight is not None else torch.ones(d)
        qn = _rope(rms(x_q.float(), w_q, eps).to(dt).float(), c.unsqueeze(1), s.unsqueeze(1), rot, neox)
        self._store_k(k, k_nope, k_rope, rot, tok.unsqueeze(1) * k_nope.stride(0), tok.unsqueeze(1) * k_rope.stride(0))
        q_at = tok.view(-1, 1, 1) * q_out.stride(0) + torch.arange(h).view(1, -1, 1) * q_out.stride(1)
        if q_out.element_size() == 1:
            values, scales = _packed(qn, rot, q_out.dtype)
            nope = d - rot
            _write(q_out, q_at + torch.arange(nope), values, "q_nope_scale_buff")
            _write(q_out.view(torch.uint8), q_at + nope + torch.arange(scales.size(-1)), scales, "q scales")
            r_at = tok.view(-1, 1, 1) * q_rope.stride(0) + torch.arange(h).view(1, -1, 1) * q_rope.stride(1)
            _write(q_rope, r_at + torch.arange(rot), qn[..., -rot:].to(q_rope.dtype), "q_rope_buff")
        else:
            _write(q_out, q_at + i, qn.to(q_out.dtype), "q_nope_scale_buff")
        nope_pool, rope_pool, _tables, dest, bid = swa
        if nope_pool is None:
            return
        rows = []  # swa_row_for_token (:4375-4392)
        for n in range(t):
            b, p = int(_read(bid, torch.int32, torch.tensor([n]), "batch_id_per_token")), int(pos[n])
            row = -1
            if b >= 0 and p >= 0:
                if dest is not None:
                    row = int(_read(dest, torch.int32, torch.tensor([n]), "swa_dest_row"))
                else:
                    raise NotImplementedError("the double writes swa_dest_row mode only")
            rows.append(row if 0 <= row < nope_pool.size(0) else -1)
        keep = torch.tensor(rows) >= 0
        if keep.any():
            r = torch.tensor(rows)[keep].unsqueeze(1)
            self._store_k(k[keep], nope_pool, rope_pool, rot, r * nope_pool.stride(0), r * rope_pool.stride(0))

    @staticmethod
    def _store_k(k: Tensor, nope_buf: Tensor, rope_buf: Tensor, rot: int, at: Tensor, rope_at: Tensor) -> None:
        d = k.size(-1)
        if nope_buf.element_size() == 1:
            values, scales = _packed(k, rot, nope_buf.dtype)
            nope = d - rot
            _write(nope_buf, at + torch.arange(nope), values, "k_nope_scale_buff")
            _write(nope_buf.view(torch.uint8), at + nope + torch.arange(scales.size(-1)), scales, "k scales")
        else:
            _write(nope_buf, at + torch.arange(d), k.to(nope_buf.dtype), "k_nope_scale_buff")
        _write(rope_buf, rope_at + torch.arange(rot), k[..., -rot:].to(rope_buf.dtype), "k_rope_buff")
