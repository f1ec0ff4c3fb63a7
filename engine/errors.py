"""The one base of every error a user is shown as a line of text (the command line: ``n2n-tui: error: ...`` and exit
status 2; the dashboard: a notification), and ``first_line``, the one way an exception becomes that line.

Each error also keeps the built-in class callers caught before (``ConfigError`` is a ``ValueError``, ``WriteError``
an ``OSError``), so code written against those still works."""
from __future__ import annotations


class N2NError(Exception):
    """An error whose message is meant for the user: one line that says what is wrong and, where it can, what to do."""


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its class name when it has none."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:limit] if limit else line


def described(e: BaseException, limit: int | None = None) -> str:
    """``ClassName: first line`` (for errors that are not ours: the class says what kind of failure it was)."""
    return f"{type(e).__name__}: {first_line(e, limit)}" if str(e).strip() else type(e).__name__
