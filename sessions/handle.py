"""``RunHandle``: the one face of a run that every viewer (the dashboard, ``attach --json``, the sweep view, the
browser) uses, whatever holds the run: a runner process (``sessions.remote.RemoteRun``, through its control socket),
this process (``LocalRun``, ``train --in-process``) or a sweep (``sessions.sweep.TrialRun``). Viewers call it and
never probe; the test suite checks that every handle has all of it.

Opening one (start a run, attach to a live one, build a trainer) is ``sessions.launch``.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from engine.config import RunConfig
from engine.errors import described
from engine.events import Event, StateEvent
from engine.states import RunState

Patches = tuple  # (noisy, denoised, clean): uint8 arrays (K, 3, H, W)


@runtime_checkable
class RunHandle(Protocol):
    # identity
    run_id: str
    config: RunConfig
    run_dir: Path | None      # its folder (runner.log, checkpoints), None when it has none here
    device: str
    pid: int                  # the process that trains it
    where: str                # that process in words, for the event log: "runner pid 123", "in this process", ...
    lives_on: bool            # whether the run goes on when this viewer closes (a runner, a sweep trial)
    # state and progress, kept current by the run's events
    state: str                # a RunState
    message: str              # why it paused, failed or stopped
    step: int
    epoch: int
    total_steps: int
    lr: float
    best_psnr: float | None
    best_step: int | None

    @property
    def alive(self) -> bool:
        """Whether its events still arrive (the trainer thread or the socket reader is running)."""

    def hyperparameters(self) -> dict:
        """The live hyper-parameters: ``{name: {"value", "type", "min", "max", "min_open", "help"}}``."""

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        """Call ``sink`` with every event from now on (from another thread)."""

    def start(self) -> None:
        """Start following the run (and, in this process, training it)."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self, reason: str = "") -> None:
        """End the run after its current step; its state is saved and ``--resume`` continues it."""

    def set_hyperparameter(self, name: str, value) -> None:
        """Change a live hyper-parameter (``lr``, ``threads``, what the Model declares); ValueError (one line) when
        the value is refused."""

    def export(self, path: str | os.PathLike | None = None, force: bool = False) -> dict:
        """The verified export of the best weights (``sessions.export.export_run``)."""

    def latest_patches(self) -> Patches | None:
        """The newest evaluation's sample patches, when the handle has them."""

    def close(self) -> None:
        """Let go of the run (a run in this process is stopped by its viewer first, not here)."""


class LocalRun:
    """A ``Trainer`` in this process (``train --in-process``), as a ``RunHandle``: the run ends with the process."""

    lives_on = False
    where = "in this process"

    def __init__(self, trainer, store):
        self.trainer, self.store = trainer, store
        self.run_id, self.config, self.run_dir = trainer.run_id, trainer.config, trainer.run_dir
        self.device, self.pid = str(trainer.device), os.getpid()
        self._thread: threading.Thread | None = None

    # the trainer's own live values
    state = property(lambda self: self.trainer.state)
    message = property(lambda self: self.trainer.message)
    step = property(lambda self: self.trainer.step)
    epoch = property(lambda self: self.trainer.epoch)
    total_steps = property(lambda self: self.trainer.total_steps)
    lr = property(lambda self: self.trainer.lr)
    best_psnr = property(lambda self: self.trainer.best_psnr)
    best_step = property(lambda self: self.trainer.best_step)

    @property
    def alive(self) -> bool:
        return self.trainer.alive

    def hyperparameters(self) -> dict:
        return self.trainer.hyperparameters()

    def add_sink(self, sink) -> None:
        self.trainer.add_sink(sink)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"trainer-{self.run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The trainer's thread; should ``run`` itself ever raise, its viewers hear that it failed instead of
        waiting for ever."""
        try:
            self.trainer.run()
        except Exception as e:
            self.trainer.publish(StateEvent(self.run_id, RunState.FAILED, described(e), self.trainer.step))

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def pause(self) -> None:
        self.trainer.pause()

    def resume(self) -> None:
        self.trainer.resume()

    def stop(self, reason: str = "") -> None:
        self.trainer.stop(reason)

    def set_hyperparameter(self, name: str, value) -> None:
        self.trainer.set_hyperparameter(name, value)

    def export(self, path: str | os.PathLike | None = None, force: bool = False) -> dict:
        from .export import export_run

        return export_run(self.store, self.run_id, path, dataset=self.trainer.dataset, force=force)

    def latest_patches(self) -> Patches | None:
        return None  # a run starting here has shown nothing yet; its evaluations arrive as events

    def close(self) -> None:
        pass
