"""bai kernel runner: the stdlib-only program the agent mounts into kernel containers."""
