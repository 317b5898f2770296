"""Layer 2: build guarded functions from the target table and put them in place (hooks, install, status)."""
