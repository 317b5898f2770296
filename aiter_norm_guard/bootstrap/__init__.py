"""Layer 3: how the guard gets into a process: the switches, the start-up file, the public API."""
