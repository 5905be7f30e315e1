"""bai clients/python."""
