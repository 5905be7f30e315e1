"""bai gateway."""
