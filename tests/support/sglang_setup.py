"""What the fused-path scripts share: the emulated ROCm + aiter host, stubs for non-norm kernels, and
sglang's own distributed set-up (gloo), on every pinned release.

None of it is a norm: the norm kernels stay the emulation's double (``stubbed_norm_kernels`` proves
no norm name was ever served by a stub).
"""

from __future__ import annotations

import inspect
import socket
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stubs

stubbed_norm_kernels = stubs.stubbed_norm_kernels
GFX950 = "gfx950:sramecc+:xnack-"


def rocm(arch: str | None = None) -> Any:
    """The emulated ROCm + aiter host (``arch``: the GPU sglang is told it runs on); then the guard is
    imported, as an operator would (installed unless ``AITER_NORM_GUARD=0``).  Returns the kernel double."""
    from aiter_norm_guard.emulation import AiterKernelDouble, EmulatedRocm

    emu = EmulatedRocm(AiterKernelDouble(), **({"arch": arch} if arch else {}))
    emu.activate()
    import aiter_norm_guard  # noqa: F401

    return emu.kernels


class _HipTarget:
    backend, arch, warp_size = "hip", "gfx942", 64


class _TritonHipDriver:
    """Answers ``triton.runtime.driver.active.get_current_target()`` as a ROCm host would (some sglang
    kernel modules ask at import; this host has no GPU driver).  Nothing is ever launched through it."""

    def get_current_target(self) -> _HipTarget:
        return _HipTarget()

    def get_current_device(self) -> int:
        return 0


def stub_non_norm_kernels() -> None:
    """Non-norm aiter / sgl_kernel names as import-level stubs, the platform shims of ``stubs``,
    and triton's active driver answering "hip"."""
    stubs.install()
    try:
        import triton.runtime

        triton.runtime.driver.set_active(_TritonHipDriver())  # type: ignore[arg-type]
    except ImportError:
        pass
    stubs.platform_shims()
    import sglang.srt.distributed.parallel_state as ps

    original = ps.init_model_parallel_group

    def cpu_group(*args: Any, **kwargs: Any) -> Any:
        """No NCCL / custom all-reduce communicators: gloo does every collective (tests install the
        custom all-reduce double themselves)."""
        kwargs.update(use_pynccl=False, use_custom_allreduce=False)
        return original(*args, **kwargs)

    ps.init_model_parallel_group = cpu_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_args(rank: int = 0, **kw: Any) -> Any:
    """sglang's ServerArgs for a CPU run of a dummy model, published as a scheduler of rank ``rank`` does."""
    from sglang.srt import server_args as sa

    args = sa.ServerArgs(model_path="dummy", device="cpu", **kw)
    try:
        from sglang.srt.runtime_context import SpawnRanks, publish
    except ImportError:  # <= 0.5.20: the rank comes from the process groups
        sa.set_global_server_args_for_scheduler(args)
    else:  # 0.5.21+: the launcher publishes this process's place with the args
        publish(args, role="scheduler", ranks=SpawnRanks(world_rank=rank))
    return args


def distributed(rank: int = 0, world_size: int = 1, port: int | None = None, tp: int = 1, **kw: Any) -> Any:
    """sglang's own distributed init on gloo, TP ``tp``, and its DP-attention / MoE state."""
    from sglang.srt.distributed import init_distributed_environment, initialize_model_parallel

    args = server_args(rank, tp_size=tp, **kw)
    init_distributed_environment(
        backend="gloo",
        world_size=world_size,
        rank=rank,
        local_rank=rank,
        distributed_init_method=f"tcp://127.0.0.1:{port or free_port()}",
    )
    if "tensor_model_parallel_size" in inspect.signature(initialize_model_parallel).parameters:
        initialize_model_parallel(tensor_model_parallel_size=tp)
    else:  # 0.5.21+: the widths come from the published server args (get_parallel())
        initialize_model_parallel()
    from sglang.srt.layers.dp_attention import initialize_dp_attention

    if len(inspect.signature(initialize_dp_attention).parameters) == 1:  # 0.5.21+: the published topology
        initialize_dp_attention(args)
    else:
        config = types.SimpleNamespace(hidden_size=64, dtype=None, hf_config=types.SimpleNamespace())
        initialize_dp_attention(args, config)
    stubs.freeze()
    return args


def flat(out: Any) -> list[Any]:
    """A result (tensor, or tuples / lists of them) as JSON: shape, dtype, values (1-byte dtypes as raw bytes)."""
    import torch

    if isinstance(out, torch.Tensor):
        raw = out.view(torch.uint8) if out.dtype.itemsize == 1 else out.float()
        return [[list(out.shape), str(out.dtype), raw.flatten().tolist()]]
    return [x for o in (out or ()) for x in flat(o)] if isinstance(out, (tuple, list)) else []


def outcome(fn: Any) -> dict[str, Any]:
    """What calling ``fn`` gave, as JSON: ``ok`` and its values, or the exception's type and text."""
    try:
        return {"outcome": "ok", "values": flat(fn())}
    except Exception as exc:
        return {"outcome": type(exc).__name__, "detail": str(exc)[:300]}


def guard(mode: str) -> None:
    """The guard off for an ``unguarded`` run, on (installed afresh) for any other mode."""
    import aiter_norm_guard

    if mode == "unguarded":
        aiter_norm_guard.uninstall()
    else:
        aiter_norm_guard.install(force=True)


def report(out: dict[str, Any]) -> None:
    """Print a probe's results as one JSON line, with the entries the guard patched and any norm kernel
    a stub stood in for (there must be none)."""
    import json

    import aiter_norm_guard

    out["guarded_entries"] = sorted(t["name"] for t in aiter_norm_guard.install(force=True)["targets"] if t["patched"])
    out["stubbed_norm_kernels"] = stubbed_norm_kernels()
    print(json.dumps(out))
