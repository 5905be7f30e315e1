"""The coordinator's domain: circuits, their registry and the access rule (no transport here)."""
