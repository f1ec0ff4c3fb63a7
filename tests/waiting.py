"""The test suite's waiting helpers, one of each: ``wait_for`` lets a Textual app under a pilot run until a condition
holds, ``wait_until`` polls a condition from plain code, ``poll_last_run`` polls the store until its newest run's row
satisfies a predicate. (What an app on a pseudo-terminal has written: ``terminal.Terminal.expect``.)

The defaults are generous (a loaded machine must not flake): a test that needs an answer sooner passes ``timeout``.
No torch here: a viewer that must not import torch (test_runner.py's) imports this module too."""
from __future__ import annotations

import time


async def wait_for(pilot, cond, timeout=60.0):
    """Let the app run until ``cond()`` holds, or ``timeout`` seconds pass; returns the final ``cond()``."""
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await pilot.pause(0.05)
    return cond()


def wait_until(cond, timeout=60.0, every=0.05):
    """Poll ``cond()`` every ``every`` seconds until it holds (returns True); AssertionError after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(every)
    raise AssertionError("timed out")


def poll_last_run(runs, pred, timeout=120.0):
    """The newest run's row in the store under ``runs`` once ``pred(row)`` holds; AssertionError after ``timeout``."""
    from sessions import Store

    deadline = time.time() + timeout
    while time.time() < deadline:
        if (runs / "sessions.sqlite").exists():
            with Store(runs, create=False, readonly=True) as s:
                rows = s.list_runs()
            if rows and pred(rows[-1]):
                return rows[-1]
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the run")
