"""The states a run goes through, one enum for every layer (trainer, store, socket, viewers), and the groups the
layers ask about. A ``RunState`` is a ``str``: it compares equal to the text the store and the socket carry."""
from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    IDLE = "idle"                  # built, not started (its data may still be loading)
    RUNNING = "running"
    PAUSED = "paused"              # by a viewer, or by the loss guard (the message says which)
    STOPPED = "stopped"            # by a viewer or a signal: its state is saved, --resume continues it
    FINISHED = "finished"          # every epoch done
    FAILED = "failed"              # an error ended it (the message says which)
    CRASHED = "crashed"            # its runner died without saying so (the store's verdict); --resume continues it
    DISCONNECTED = "disconnected"  # a viewer lost its runner and the store could not say how the run ended
    PENDING = "pending"            # a sweep trial Tune has not started yet


LIVE = frozenset({RunState.RUNNING, RunState.PAUSED})        # a runner holds it: attach and ctl reach it
ACTIVE = LIVE | {RunState.IDLE}                                 # not over yet: a viewer quitting asks first
ENDED = frozenset({RunState.STOPPED, RunState.FINISHED, RunState.FAILED, RunState.CRASHED})
PENDING_OR_RUNNING = frozenset({RunState.PENDING, RunState.RUNNING})  # a sweep not over yet
UNDERWAY = PENDING_OR_RUNNING | {RunState.PAUSED}             # a sweep's trial not over yet (a person may pause one)
CLEAN_END = frozenset({RunState.FINISHED, RunState.STOPPED})  # how a run ends with exit status 0
STORED = (RunState.RUNNING, RunState.PAUSED, *sorted(ENDED))  # the states a run's row may hold


def sql_list(states) -> str:
    """``('paused', 'running')``: a group of states for an SQL ``IN``."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"
