"""Errors the command line turns into one line on stderr and exit status 2."""
from engine.errors import N2NError


class UsageError(N2NError):
    """Bad input found by a command itself; printed as one line, exit status 2."""
