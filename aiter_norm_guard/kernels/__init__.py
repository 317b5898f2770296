"""aiter's kernel contracts, as data: how each kernel reads the tensors it is given.

Layer 0 of aiter_norm_guard, and read by its test double too: a top-level package of its
own, so that reading a contract never imports (and so never installs) the guard.  Pure: no
torch, no sglang.  ``form`` is the shape of a contract, ``needs`` what a caller must make true
for a set of kernels, and one module per kernel family holds the declarations, each citing
the aiter source it was read from.
"""
