"""The `repsearch` command line."""
