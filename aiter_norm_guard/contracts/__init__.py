"""Layer 0, pure: meeting aiter's kernel contracts (the data: the ``aiter_kernel_contracts`` package)."""
