"""Test support: sglang's non-norm kernels stubbed at import, and its real model code on CPU."""
