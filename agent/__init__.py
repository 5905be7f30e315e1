"""bai agent."""
