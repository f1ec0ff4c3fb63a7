"""The way between a sweep's driver and its trials, through Ray: one small actor per sweep (``Mailbox``, named after
the sweep, no CPU of its own), wherever the trials train. A trial calls ``exchange`` a few times a second: it hands
over its events and status since the last call and the answers to the commands it applied, and takes the commands
waiting for it. The driver ``post``s a viewer's command and collects its ``answer``; it ``drain``s the trials'
events into their runs' records. Ray is imported lazily: the spec and the view need none of this."""
from __future__ import annotations

import itertools

NAMESPACE = "n2n-tui"
POLL_SECONDS = 0.2          # how often a trial exchanges with the mailbox (a command waits at most this long)


def mailbox_name(sweep_id: str) -> str:
    return f"mailbox-{sweep_id}"


class Mailbox:
    """The actor's state; every method is one short call (Ray runs them one at a time)."""

    def __init__(self):
        self._ids = itertools.count(1)
        self._commands: dict[str, list] = {}     # trial -> [(id, msg)] not taken yet
        self._answers: dict[int, dict] = {}      # command id -> the trial's reply
        self._events: dict[str, list] = {}       # trial -> event records not drained yet
        self._status: dict[str, dict] = {}       # trial -> its last status
        self._unanswered: set[int] = set()       # commands nobody waits for: their answers are dropped

    def post(self, trial: str, msg: dict, answer: bool = True) -> int:
        cmd_id = next(self._ids)
        self._commands.setdefault(trial, []).append((cmd_id, msg))
        if not answer:
            self._unanswered.add(cmd_id)
        return cmd_id

    def answer(self, cmd_id: int) -> dict | None:
        return self._answers.pop(cmd_id, None)

    def withdraw(self, trial: str, cmd_id: int) -> bool:
        """Take back a command the trial has not taken (the viewer gave up waiting); False if it was taken."""
        waiting = self._commands.get(trial, [])
        kept = [(i, m) for i, m in waiting if i != cmd_id]
        self._commands[trial] = kept
        return len(kept) < len(waiting)

    def exchange(self, trial: str, events: list, answers: list, status: dict | None) -> list:
        if events:
            self._events.setdefault(trial, []).extend(events)
        for cmd_id, reply in answers:
            if cmd_id in self._unanswered:
                self._unanswered.discard(cmd_id)
            else:
                self._answers[cmd_id] = reply
        if status is not None:
            self._status[trial] = status
        return self._commands.pop(trial, [])

    def drain(self) -> tuple[dict, dict]:
        """``(events by trial, status by trial)``: what the trials sent since the last drain, their last status."""
        events, self._events = self._events, {}
        return events, dict(self._status)


def open_mailbox(sweep_id: str):
    """The driver's side: the sweep's mailbox actor, created (or found again, on a resumed sweep)."""
    import ray

    actor = ray.remote(num_cpus=0)(Mailbox)
    return actor.options(name=mailbox_name(sweep_id), namespace=NAMESPACE, get_if_exists=True,
                         max_concurrency=1).remote()


def find_mailbox(sweep_id: str | None):
    """A trial's side: its sweep's mailbox, or None (an older sweep, or none reachable: the trial reports its events
    with its results instead)."""
    if not sweep_id:
        return None
    try:
        import ray

        return ray.get_actor(mailbox_name(sweep_id), namespace=NAMESPACE)
    except Exception:
        return None
