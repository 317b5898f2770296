"""The attribute that marks a guarded function and points at the original it wraps."""

WRAPPED_ATTR = "__aiter_norm_guard_original__"
