"""The per-process install: post-import hooks, the patch record, live instances, status."""
