"""Outside worlds behind the domain's ports (the state file)."""
