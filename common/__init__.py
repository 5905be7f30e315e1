"""bai common."""
