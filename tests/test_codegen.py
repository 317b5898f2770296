"""The generated fast path mirrors the original's signature exactly and binds arguments like it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from aiter_norm_guard.guard import codegen
from aiter_norm_guard.guard.guard import Guard, guard_of, original_of
from aiter_norm_guard.kernels.form import Kernel, Rows, Vector
from aiter_norm_guard.targets import Attr, Feed, Group, Native, Target

SENTINEL = object()


#: A HIP-like contract on host memory (these tests run on CPU without the emulation).
KERNEL = Kernel(
    "test kernel",
    "tests",
    rows=(("input", Rows()), ("residual", Rows())),
    vectors=(("weight", Vector()),),
    same_rows=("residual",),
    device=False,
)


def make(original: Any, feed: Feed, name: str = "Norm.forward") -> Any:
    target = Target(name, "m", name, feed, (KERNEL,), Native("forward_native", ("x",)))
    return Guard(original, target).build()


class Norm(torch.nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden))

    def forward_native(self, x: Any) -> Any:
        return ("native", x)


def test_signature_defaults_and_binding_are_the_originals() -> None:
    seen: list[tuple[Any, ...]] = []

    def forward(
        self: Any, x: Any, residual: Any = None, post: Any = SENTINEL, *rest: Any, flag: int = 3, **extra: Any
    ) -> Any:
        seen.append((x, residual, post, rest, flag, extra))
        return x

    fn = make(forward, Feed(rows=("residual",), summed=("post",)))
    assert inspect.signature(fn) == inspect.signature(forward)
    assert fn.__name__ == "forward" and fn.__wrapped__ is forward and original_of(fn) is forward
    m, x = Norm(), torch.randn(2, 8)
    fn(m, x)
    fn(m, x, None, None, 1, 2, flag=4, more=5)
    assert seen[0] == (x, None, SENTINEL, (), 3, {})
    assert seen[1] == (x, None, None, (1, 2), 4, {"more": 5})
    with pytest.raises(TypeError):  # bad calls fail as the original's would
        fn(m)


def test_positional_only_and_keyword_only_parameters() -> None:
    received: list[Any] = []

    def forward(self: Any, x: Any, /, residual: Any = None, *, eps: float = 1e-6) -> Any:
        received.append((x.shape, residual, eps))
        return x

    fn = make(forward, Feed(rows=("residual",)))
    assert inspect.signature(fn) == inspect.signature(forward)
    m, x = Norm(), torch.randn(3, 4, 8)  # rank 3: the slow path passes keywords through too
    assert fn(m, x, eps=0.5).shape == x.shape
    assert received == [((12, 8), None, 0.5)]
    with pytest.raises(TypeError):
        fn(m, x=x)


def test_fast_path_is_the_original_call_itself() -> None:
    calls: list[Any] = []

    def forward(self: Any, x: Any, residual: Any = None) -> Any:
        calls.append(x)
        return x

    fn = make(forward, Feed(rows=("residual",)))
    m, x = Norm(), torch.randn(4, 8)
    assert fn(m, x) is x and calls[-1] is x
    assert guard_of(fn) is not None


@pytest.mark.parametrize("weight", ["parameter", "buffer", "plain"])
def test_weight_is_found_wherever_the_module_keeps_it(weight: str) -> None:
    def forward(self: Any, x: Any) -> Any:
        return x

    m = Norm()
    if weight != "parameter":
        del m.weight
        if weight == "buffer":
            m.register_buffer("weight", torch.ones(8))
        else:
            m.weight = torch.ones(8)
    fn = make(forward, Feed())
    x = torch.randn(2, 8)
    assert fn(m, x) is x  # found: the fast path
    assert fn(m, torch.randn(2, 4))[0] == "native"  # a wrong hidden size: the fallback


def test_names_that_are_not_identifiers_are_refused() -> None:
    def forward(self: Any, x: Any) -> Any:
        return x

    with pytest.raises(ValueError):
        codegen.weight_lookup("_w0", Attr(("weight; import os",)), "self")
    with pytest.raises(LookupError):
        make(forward, Feed(groups=(Group("hidden"),)))


@torch.library.custom_op("aiter_norm_guard_test::rows", mutates_args=())
def _rows_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    assert x.dim() == 2 and x.is_contiguous()  # the kernel contract, as an opaque op
    return x * w


@_rows_op.register_fake
def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@pytest.mark.parametrize("shape", [(4, 8), (2, 4, 8), (0, 8)])
def test_torch_compile_traces_the_guard_in_one_graph(shape: tuple[int, ...]) -> None:
    """fullgraph=True: no path of the fast check may rely on an exception (Dynamo cannot trace one)."""

    class Native(Norm):
        def forward_native(self, x: Any) -> Any:
            return x * self.weight

    def forward(self: Any, x: Any) -> Any:
        return _rows_op(x, self.weight)

    fn = make(forward, Feed())
    m = Native()
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: fn(m, x), backend="eager", fullgraph=True)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), x * m.weight)
