"""Layer 0, pure: what aiter's kernels read (their contracts) and how to give them that layout."""
