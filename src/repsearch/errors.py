"""User-facing errors: one clear line, exit code 2, no traceback (see cli.main)."""


class UserError(Exception):
    """Something the user can fix (bad config, missing data, mismatched cache, bad shapes)."""
