"""Layout fuzzing with an oracle per input, through each entry's real sglang module and the kernel double.

Ranks 1-5, sizes 0/1/2/3/5, offset slices, permutes and stride-0 expands, fp32/fp16/bf16,
weight dtypes, residual / post-residual tensors of the same or another (broadcastable) shape.
For every input, one oracle branch:

- ``native raises``: the guarded call raises the same type, and the kernel is never reached;
- ``native route`` (zero rows, a weight or residual the kernel would misread): the guarded
  result is ``forward_native``'s, bit for bit, and the kernel is never reached;
- ``release route`` (LayerNorm with a dtype its aiter branch does not take): the release's own
  call, bit for bit;
- ``kernel route``: the release's own entry on 2-D contiguous copies, bit for bit, and nothing
  unsafe reaches the kernel (``kernel refuses``: that call raises, fp32 on aiter <= v0.1.17's HIP
  kernel, and so does the guarded one).

``FUZZ_EXAMPLES`` sets the examples per entry (default 2000); counts per branch go to
results/fuzz-<release>.json and the test output.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiter_norm_guard.cli.cases import GEMMA, LAYER, RMS, make_module
from aiter_norm_guard.kernels.needs import ROWS_LAYOUT, WEIGHT_DTYPE, ZERO_ROWS
from conftest import REPO, original_entry, require_entry, sglang_version, upstream_checks

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
HALF = (torch.float16, torch.bfloat16)


@st.composite
def layouts(draw: Any, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of ``shape`` whose memory layout is drawn: contiguous, offset slice, permuted, or expanded."""
    kind = draw(st.sampled_from(["contiguous", "slice", "permute", "expand"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))

    def fresh(s: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(s, generator=gen).to(dtype)

    if kind == "slice":  # a window with offsets into a larger buffer on every dim
        pads = [draw(st.integers(0, 3)) for _ in shape]
        buf = fresh(tuple(d + p for d, p in zip(shape, pads, strict=True)))
        return buf[tuple(slice(p, p + d) for d, p in zip(shape, pads, strict=True))]
    if kind == "permute" and len(shape) > 1:
        perm = draw(st.permutations(range(len(shape))))
        inverse = [perm.index(i) for i in range(len(shape))]
        return fresh(tuple(shape[p] for p in perm)).permute(*inverse)
    if kind == "expand" and any(d > 1 for d in shape):
        ones = tuple(1 if draw(st.booleans()) else d for d in shape)
        return fresh(ones).expand(*shape)
    return fresh(shape)


def unsafe(name: str, t: torch.Tensor) -> bool:
    """Rows the kernel cannot read: anything but 2-D contiguous, except where its contract honours more
    (Triton: both strides; CK layernorm2d: each tensor's own row pitch, so a unit last stride suffices)."""
    if name == "fused_add_rmsnorm_pad" or t.dim() < 2:
        return False
    if name == "layernorm2d_fwd" and t.dim() == 2 and t.numel() and (t.stride(1) == 1 or t.size(1) == 1):
        return False
    return not (t.dim() == 2 and t.is_contiguous() and t.numel())


def same(got: Any, want: Any) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            same(g, w)
        return
    assert got.shape == want.shape and got.dtype == want.dtype and torch.equal(got, want)


def misread(x: torch.Tensor, extra: list[torch.Tensor], weights: list[torch.Tensor], hidden: int) -> bool:
    """What the kernel cannot read correctly in any layout (the test's own statement of the contract):
    ``extra`` are the residual and, with it, the post-residual additions (added to it in Python: only
    the sum must be x's); ``hidden`` the n the kernel reads."""
    if x.numel() == 0 or x.shape[-1] != hidden:
        return True
    if any(w.dtype != x.dtype or w.numel() != hidden or not w.is_contiguous() for w in weights):
        return True
    if not extra:
        return False
    try:
        total = torch.broadcast_shapes(*(t.shape for t in extra))
    except RuntimeError:
        return True
    return extra[0].shape != x.shape or total != x.shape or any(t.dtype != x.dtype for t in extra)


def odd_length(m: Any, entry: str, factor: float) -> Any:
    """``m`` with its weight (and bias) of ``factor`` times its hidden size: what the kernel would read past."""
    n = max(1, int(m.weight.numel() * factor))
    for name in ("weight", "bias") if entry == LAYER else ("weight",):
        getattr(m, name).data = torch.randn(n).to(getattr(m, name).dtype)
    return m


@pytest.mark.parametrize(("entry", "build"), [(RMS, "legacy"), (RMS, "opus"), (GEMMA, "legacy"), (LAYER, "legacy")])
def test_fuzz_every_input_meets_its_oracle(entry: str, build: str, layernorm: Any, rocm: Any) -> None:
    """``build``: the aiter the double stands for (<= v0.1.17 "legacy", >= v0.1.18 "opus")."""
    require_entry(entry)
    kernels = rocm.kernels
    kernels.compute, kernels.record, kernels.build = True, True, build
    original = original_entry(layernorm, entry)
    has_residual = entry != LAYER
    has_post = "post_residual_addition" in original.__code__.co_varnames
    norms = {(h, wdt, 1.0): make_module(layernorm, entry, h, wdt) for h in (1, 4, 8) for wdt in DTYPES}
    if entry == LAYER:  # weights of another length than hidden_size (the kernel reads hidden_size elements)
        norms |= {
            (h, wdt, f): odd_length(make_module(layernorm, entry, h, wdt), entry, f)
            for h in (4, 8)
            for wdt in HALF
            for f in (0.5, 2.0)
        }
    branches: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def one(data: Any) -> None:
        hidden = data.draw(st.sampled_from([1, 4, 8]))
        rank = data.draw(st.integers(1, 5))
        lead = data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 5]), min_size=rank - 1, max_size=rank - 1))
        shape = (*lead, data.draw(st.sampled_from([hidden, hidden, hidden, 2 * hidden])))
        dtype = data.draw(st.sampled_from(DTYPES))
        wdt = dtype if data.draw(st.integers(0, 4)) else data.draw(st.sampled_from(DTYPES))
        length = data.draw(st.sampled_from([1.0, 1.0, 0.5, 2.0])) if entry == LAYER and hidden > 1 else 1.0
        wdt = dtype if length != 1.0 and dtype in HALF else wdt
        x = data.draw(layouts(shape, dtype))
        args: list[torch.Tensor | None] = [x]
        if has_residual and data.draw(st.booleans()):
            res_shape = shape if data.draw(st.integers(0, 5)) else data.draw(st.sampled_from([(1, *shape), shape[-1:]]))
            args.append(data.draw(layouts(res_shape, dtype)))
            if has_post and data.draw(st.booleans()):  # any layout, or one that broadcasts: only the sum matters
                ones = (*(1 for _ in shape[:-1]), shape[-1])
                post_shape = data.draw(st.sampled_from([shape, shape, shape[-1:], ones]))
                args.append(data.draw(layouts(post_shape, dtype)))
        elif has_post and not data.draw(st.integers(0, 5)):  # a post without a residual: ignored by the release
            args += [None, data.draw(layouts((*shape[:-1], 1, shape[-1]), dtype))]
        m = norms.get((hidden, wdt, length), norms[(hidden, wdt, 1.0)])
        extra = [a for a in args[1:] if a is not None] if len(args) > 1 and args[1] is not None else []
        weights = [m.weight, m.bias] if entry == LAYER else [getattr(m, "gemma_weight", m.weight)]
        done = upstream_checks(layernorm, entry, bool(extra))
        if (ZERO_ROWS in done and x.dim() and x.shape[0] == 0) or (
            WEIGHT_DTYPE in done and weights[0].dtype != x.dtype
        ):  # the release returns (or goes native) before any kernel itself: its own behaviour, untouched
            kernels.reset()
            try:
                mine = original(m, *args)
            except Exception as exc:
                with pytest.raises(type(exc)):
                    m(*args)
            else:
                same(m(*args), mine)
            assert kernels.calls == []
            branches["release exit"] += 1
            return
        hidden = getattr(m, "hidden_size", weights[0].numel())
        if (
            ROWS_LAYOUT in done
            and x.dim() != 2
            and any(t.shape != x.shape for t in extra)
            and all(t.dim() and t.shape[-1] == x.shape[-1] and t.dtype == x.dtype for t in extra)
            and extra[0].numel() == x.numel()
            and not misread(x, [], weights, hidden)
        ):
            # the release reshapes x, the residual and post to (-1, n) rows itself: the residual is x's rows,
            # a post's rows are or broadcast to them (else the release's own sum raises): its own result
            kernels.reset()
            try:
                mine = original(m, *args)
            except Exception as exc:  # the kernel's own refusal (fp32 on aiter <= v0.1.17's HIP kernel)
                with pytest.raises(type(exc)):
                    m(*args)
            else:
                kernels.reset()
                same(m(*args), mine)
            for call in kernels.calls:
                assert not any(unsafe(call.name, t) for t in call.tensors.values()), (call.name, x.shape)
            branches["release rows"] += 1
            return
        kernels.reset()
        try:
            want: Any = m.forward_native(*args)
        except Exception as exc:
            with pytest.raises(type(exc)):
                m(*args)
            assert kernels.calls == [], "native raised but the kernel was reached"
            branches["native raises"] += 1
            return
        if entry == LAYER and (x.dtype not in HALF or x.dtype != m.dtype):
            kernels.reset()
            same(m(*args), original(m, *args))
            branches["release route"] += 1
            return
        if misread(x, extra, weights, hidden):
            same(m(*args), want)
            assert kernels.calls == [], "a misread input reached the kernel"
            branches["native route"] += 1
            return
        residual_given = len(args) > 1 and args[1] is not None
        rows = [
            a if a is None or (i == 2 and not residual_given) else a.contiguous().view(-1, a.shape[-1])
            for i, a in enumerate(args)
        ]
        try:
            canonical = original(m, *rows)
        except RuntimeError as exc:  # the kernel's own refusal (fp32 on aiter <= v0.1.17's HIP kernel)
            kernels.reset()
            with pytest.raises(type(exc)):
                m(*args)
            branches["kernel refuses"] += 1
            return
        kernels.reset()
        got = m(*args)
        for call in kernels.calls:
            assert not any(unsafe(call.name, t) for t in call.tensors.values()), (call.name, x.shape, x.stride())
        same(
            got, tuple(c.view(x.shape) for c in canonical) if isinstance(canonical, tuple) else canonical.view(x.shape)
        )
        branches["kernel route"] += 1

    try:
        one()
    finally:
        kernels.build = "legacy"
    out = REPO / "results" / f"fuzz-{sglang_version()}.json"
    out.parent.mkdir(exist_ok=True)
    known = json.loads(out.read_text()) if out.exists() else {}
    known[f"{entry} (aiter {build})"] = dict(branches)
    out.write_text(json.dumps(known, indent=2))
    print(f"\nfuzz {entry} (aiter {build}): {sum(branches.values())} inputs: {dict(branches)}")
    assert sum(branches.values()) >= EXAMPLES and branches["kernel route"] and branches["native route"]
