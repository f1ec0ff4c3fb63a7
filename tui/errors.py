"""Errors the command line turns into one line on stderr and exit status 2."""


class UsageError(Exception):
    """Bad input found by a command itself; printed as one line, exit status 2."""
