"""The per-call guard: a generated fast path per entry, its slow path, the layout plans and routes it applies."""
