"""The Textual app: ``n2n-tui`` opens the launcher; ``n2n-tui train`` opens the dashboard on a ready trainer."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Callable

from textual import work
from textual.app import App

from .screens import DashboardScreen, LauncherScreen
from .screens.dashboard import ACTIVE


class N2NApp(App[int]):
    """One app, two ways in: with a ``trainer`` it shows its dashboard; without, the launcher, which builds one
    with ``make_trainer(args) -> (trainer, store)`` (default: ``tui.commands.train_cmd.make_trainer``)."""

    CSS_PATH = "app.tcss"
    TITLE = "n2n-tui"

    def __init__(self, args: argparse.Namespace, store=None, trainer=None,
                 make_trainer: Callable | None = None, start: bool = True) -> None:
        super().__init__()
        self.args = args
        self.store = store
        self.trainer = trainer
        self.make_trainer = make_trainer
        self.start_training = start
        self.dashboard: DashboardScreen | None = None
        self.event_loop: asyncio.AbstractEventLoop | None = None

    def on_mount(self) -> None:
        self.event_loop = asyncio.get_running_loop()  # signal handlers hand their work to it
        if self.trainer is not None:
            self.open_dashboard(self.trainer, self.store)
        else:
            from .screens.launcher import train_defaults

            self.push_screen(LauncherScreen(train_defaults(getattr(self.args, "runs_dir", None)), self.store))

    def open_dashboard(self, trainer, store) -> None:
        self.trainer, self.store = trainer, store
        self.dashboard = DashboardScreen(trainer, store, export_to=getattr(self.args, "export_to", None),
                                         start=self.start_training)
        if isinstance(self.screen, LauncherScreen):
            self.switch_screen(self.dashboard)
        else:
            self.push_screen(self.dashboard)

    def on_launcher_screen_start(self, message: LauncherScreen.Start) -> None:
        self.args = message.args
        self._build_trainer(message.args)

    @work(thread=True, exclusive=True, group="launch")
    def _build_trainer(self, args: argparse.Namespace) -> None:
        """Load the data and build the model off the UI thread; report failures on the launcher."""
        make = self.make_trainer
        if make is None:
            from .commands.train_cmd import make_trainer as make
        try:
            trainer, store = make(args)
        except Exception as e:  # bad data, unwritable runs folder...: one line on the launcher, never a traceback
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            try:
                self.call_from_thread(self._launch_failed, msg)
            except RuntimeError:  # the app is already closed
                pass
            return
        try:
            self.call_from_thread(self.open_dashboard, trainer, store)
        except RuntimeError:  # the app was closed while the data loaded: the run never started
            try:
                store.set_state(trainer.run_id, "stopped", "the app was closed before the run started")
            except Exception:
                pass

    def _launch_failed(self, msg: str) -> None:
        if isinstance(self.screen, LauncherScreen):
            self.screen.show_error(msg)

    async def action_quit(self) -> None:
        """ctrl+q: on the dashboard, the same confirmed, clean stop as ``q``."""
        if self.dashboard is not None and self.dashboard.is_attached:
            if self.screen is not self.dashboard and self.dashboard.active:
                self.notify("go back to the dashboard (escape) and press q to stop the run and quit")
                return
            self.dashboard.action_quit_run()
            return
        self.exit(0)

    def on_unmount(self) -> None:
        # Whatever way the app ends, never leave the trainer's thread running: the process would not exit.
        stop_active(self.trainer)


def stop_active(trainer, reason: str = "") -> None:
    if trainer is not None and getattr(trainer, "state", None) in ACTIVE:
        try:
            trainer.stop(reason)
        except Exception:
            pass


def wait_until_done(trainer, timeout: float = 120.0) -> None:
    """Wait for a stopping trainer's thread to save its state and close the run (it is a daemon thread: leaving
    the process earlier would kill it half-way)."""
    deadline = time.monotonic() + timeout
    while getattr(trainer, "alive", False) and time.monotonic() < deadline:
        time.sleep(0.05)


def require_terminal() -> None:
    """The dashboard draws on a terminal; with none on stdin and stdout it would wait forever. Say so instead."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from .errors import UsageError

        raise UsageError("the dashboard needs a terminal (stdin and stdout are not one here); "
                         "use --headless or --json for scripts")


def _run_app(app: "N2NApp") -> None:
    """``app.run()``, with SIGHUP (terminal closed, SSH dropped) and SIGTERM handled like the dashboard's own clean
    stop: the run's state is saved and it reads ``stopped``, not ``crashed``."""
    def on_signal(signum, frame):
        stop_active(app.trainer, f"interrupted ({signal.Signals(signum).name})")
        loop = app.event_loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: app.exit(return_code=128 + signum))

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        app.run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        stop_active(app.trainer)
        wait_until_done(app.trainer)


def _exit_status(app: "N2NApp") -> int:
    if app.return_code:
        return app.return_code
    return 1 if getattr(app.trainer, "state", None) == "failed" else 0


def run_dashboard(trainer, store, args: argparse.Namespace) -> int:
    """Open the dashboard on ``trainer`` (not yet started), train in a worker thread, return the exit status:
    0, 1 when the run failed, 128 + N when signal N ended it."""
    app = N2NApp(args, store=store, trainer=trainer)
    _run_app(app)
    return _exit_status(app)


def run_launcher(args: argparse.Namespace, store=None, make_trainer: Callable | None = None) -> int:
    app = N2NApp(args, store=store, make_trainer=make_trainer)
    _run_app(app)
    return _exit_status(app)
