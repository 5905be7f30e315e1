"""bai manager."""
