"""The Textual app: ``n2n-tui`` opens the launcher; ``n2n-tui train`` and ``n2n-tui attach`` open the dashboard on a
run handle (``sessions.handle.RunHandle``: a ``RemoteRun`` of a runner process, or a ``LocalRun`` with
``--in-process``)."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from typing import Callable

from textual import work
from textual.app import App

from engine.errors import first_line
from engine.states import ACTIVE, RunState
from sessions.handle import LocalRun, RunHandle
from sessions.marks import MarkError, load_marks

from .screens import DashboardScreen, LauncherScreen


class N2NApp(App[int]):
    """One app, two ways in: with a ``trainer`` (a run handle) it shows its dashboard; without, the launcher, which
    starts one with ``make_trainer(args) -> (handle, store)`` (default: ``tui.run_args.start_from_args``)."""

    CSS_PATH = "app.tcss"
    TITLE = "n2n-tui"

    def __init__(self, args: argparse.Namespace, store=None, trainer=None,
                 make_trainer: Callable | None = None, start: bool = True, sweep=None) -> None:
        super().__init__()
        self.args = args
        self.sweep = sweep
        self.sweep_screen = None
        self.store = store
        self.trainer = trainer
        self.make_trainer = make_trainer
        self.start_training = start
        self.dashboard: DashboardScreen | None = None
        self.event_loop: asyncio.AbstractEventLoop | None = None
        self.watchdog: ExitWatchdog | None = None   # set by _run_app: real terminals only, never under run_test

    async def _on_exit_app(self) -> None:
        # however the app ends (q, a signal, the terminal or the browser tab gone), it ends within EXIT_GRACE s
        if self.watchdog is not None:
            self.watchdog.arm(self.return_code or 0)
        await super()._on_exit_app()

    def on_mount(self) -> None:
        self.event_loop = asyncio.get_running_loop()  # signal handlers hand their work to it
        if self.sweep is not None:
            from .screens.sweep import SweepScreen

            self.sweep_screen = SweepScreen(self.sweep, self.store, start=self.start_training)
            self.push_screen(self.sweep_screen)
        elif self.trainer is not None:
            self.open_dashboard(self.trainer, self.store)
        else:
            from .screens.launcher import train_defaults

            self.push_screen(LauncherScreen(train_defaults(getattr(self.args, "runs_dir", None)), self.store))

    def open_dashboard(self, trainer: RunHandle, store) -> None:
        self.trainer, self.store = trainer, store
        self.dashboard = DashboardScreen(trainer, store, export_to=getattr(self.args, "export_to", None),
                                         start=self.start_training, marks=self.marks())
        if isinstance(self.screen, LauncherScreen):
            self.switch_screen(self.dashboard)
        else:
            self.push_screen(self.dashboard)

    def marks(self) -> list:
        """The reference marks for the PSNR plot (``--mark``, ``<runs>/marks.toml``); a bad one is said, not raised:
        the run matters more than its decoration."""
        try:
            return load_marks(getattr(self.args, "runs_dir", None), getattr(self.args, "mark", None) or [])
        except MarkError as e:
            self.notify(first_line(e), title="marks not drawn", severity="error", timeout=15)
            return []

    def on_launcher_screen_start(self, message: LauncherScreen.Start) -> None:
        self.args = message.args
        self._build_trainer(message.args)

    @work(thread=True, exclusive=True, group="launch")
    def _build_trainer(self, args: argparse.Namespace) -> None:
        """Load the data and build the model off the UI thread; report failures on the launcher."""
        make = self.make_trainer
        if make is None:
            from .run_args import start_from_args as make
        try:
            trainer, store = make(args)
        except Exception as e:  # bad data, unwritable runs folder...: one line on the launcher, never a traceback
            msg = first_line(e)
            try:
                self.call_from_thread(self._launch_failed, msg)
            except RuntimeError:  # the app is already closed
                pass
            return
        try:
            self.call_from_thread(self.open_dashboard, trainer, store)
        except RuntimeError:  # the app was closed while the data loaded: the run never started
            if trainer.lives_on:
                trainer.close()  # its runner goes on: n2n-tui attach finds it
                return
            try:
                store.set_state(trainer.run_id, RunState.STOPPED, "the app was closed before the run started")
            except Exception:
                pass

    def on_runs_screen_attach(self, message) -> None:
        """Enter on a live run in the past-runs screen: watch it here."""
        current = self.trainer
        if current is not None and current.run_id == message.run_id:
            self.pop_screen()
            return
        if current is not None and not current.lives_on and current.state in ACTIVE:
            self.notify("this window's own run (--in-process) is still training: quit it first", severity="warning")
            return
        self._attach(message.run_id)

    @work(thread=True, exclusive=True, group="launch")
    def _attach(self, run_id: str) -> None:
        from sessions.launch import attach_run

        try:
            handle, store = attach_run(self.store.root, run_id)
        except Exception as e:
            msg = first_line(e)
            self.call_from_thread(self.notify, msg, severity="error")
            return
        self.call_from_thread(self._switch_to, handle, store)

    def _switch_to(self, handle, store) -> None:
        old = self.trainer
        if old is not None and old.lives_on:
            old.close()  # detach: that run goes on
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.start_training = True
        self.open_dashboard(handle, store)

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
        # Whatever way the app ends: a runner's run goes on (we only let go of it); a run in this process is stopped,
        # or the process would not exit.
        if self.trainer is not None and self.trainer.lives_on:
            self.trainer.close()
        else:
            stop_active(self.trainer)


def stop_active(trainer: RunHandle | None, reason: str = "") -> None:
    """Stop a run that lives in this process; a runner's run is never stopped by a viewer going away."""
    if trainer is None or trainer.lives_on:
        return
    if trainer.state in ACTIVE:
        try:
            trainer.stop(reason)
        except Exception:
            pass


def wait_until_done(trainer: RunHandle | None, timeout: float = 120.0) -> None:
    """Wait for a stopping trainer's thread to save its state and close the run (it is a daemon thread: leaving
    the process earlier would kill it half-way)."""
    deadline = time.monotonic() + timeout
    while trainer is not None and trainer.alive and time.monotonic() < deadline:
        time.sleep(0.05)


def require_terminal() -> None:
    """The dashboard draws on a terminal; with none on stdin and stdout it would wait forever. Say so instead.
    (A Textual driver named in the environment, such as textual-serve's web driver, draws elsewhere.)"""
    if os.environ.get("TEXTUAL_DRIVER"):
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from .errors import UsageError

        raise UsageError("the dashboard needs a terminal (stdin and stdout are not one here); "
                         "use --headless or --json for scripts")


EXIT_GRACE = 5.0          # seconds an orderly shutdown may take once the app is asked to end
SWEEP_EXIT_GRACE = 60.0   # ... the sweep view's: it is Ray's driver, and winds its trials down first


class ExitWatchdog:
    """Ends the process when the orderly shutdown of the app does not finish within ``EXIT_GRACE`` seconds.

    Why (issue 23): when the terminal vanishes (a dropped SSH connection, a killed tmux session) writes to it fail,
    and Textual's output thread (textual/drivers/_writer_thread.py, upstream) stops draining its bounded queue of 30
    writes once a write raises; the next ``write`` or the ``stop`` of the shutdown then blocks the event loop for
    ever in ``Queue.put``. A signal handler cannot help from there: it runs, but ``app.exit`` waits for the loop
    that is blocked. A viewer holds nothing that needs saving, so after the grace period its socket is closed and
    the process ends (``os._exit``); a run in this process is first stopped and its state saved. ``done`` is set
    when ``app.run()`` returned: the orderly path won, nothing to do."""

    def __init__(self, app: "N2NApp", grace: float = EXIT_GRACE):
        self.app, self.grace = app, grace
        self.done = threading.Event()
        self._armed = threading.Lock()

    def arm(self, code: int) -> None:
        if self._armed.acquire(blocking=False):
            threading.Thread(target=self._run, args=(code,), name="exit-watchdog", daemon=True).start()

    def _run(self, code: int) -> None:
        if self.done.wait(self.grace):
            return
        trainer = self.app.trainer
        if trainer is not None and not trainer.lives_on:
            stop_active(trainer, "the terminal went away")
            wait_until_done(trainer)   # its state saved: it reads stopped, not crashed
        if self.app.sweep is not None:  # the sweep's driver: its Ray processes go with it
            try:
                import ray

                ray.shutdown()
            except Exception:
                pass
        try:
            if trainer is not None and trainer.lives_on:
                trainer.close()   # the runner sees its viewer go at once
        except Exception:
            pass
        os._exit(code)


def _watch_terminal(app: "N2NApp", watchdog: ExitWatchdog, every: float = 1.0) -> None:
    """A thread: when this process's controlling terminal is gone (hung up: /dev/tty no longer opens), end the app
    as SIGHUP would, even if no SIGHUP came (a process outside the terminal's foreground group)."""
    while not watchdog.done.wait(every):
        if not _has_tty():
            watchdog.arm(128 + signal.SIGHUP)
            loop = app.event_loop
            if loop is not None:
                loop.call_soon_threadsafe(lambda: app.exit(return_code=128 + signal.SIGHUP))
            return


def _run_app(app: "N2NApp") -> None:
    """``app.run()``, with SIGHUP (terminal closed, SSH dropped) and SIGTERM handled: a runner's run goes on without
    this viewer; a run in this process stops as with ``x`` (its state saved, it reads ``stopped``, not ``crashed``).
    However it ends, the process is gone within ``EXIT_GRACE`` seconds of being asked to (``ExitWatchdog``)."""
    watchdog = app.watchdog = ExitWatchdog(app, SWEEP_EXIT_GRACE if app.sweep is not None else EXIT_GRACE)

    def on_signal(signum, frame):
        stop_active(app.trainer, f"interrupted ({signal.Signals(signum).name})")
        watchdog.arm(128 + signum)  # SIGTERM always ends it, whatever the loop is doing
        loop = app.event_loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: app.exit(return_code=128 + signum))

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGHUP, signal.SIGTERM)}
    original = sys.__stderr__
    saved_stderr = _stderr_to_run_log(app.trainer)
    if not os.environ.get("TEXTUAL_DRIVER") and _has_tty():
        threading.Thread(target=_watch_terminal, args=(app, watchdog), name="terminal-watch", daemon=True).start()
    try:
        app.run()
    finally:
        watchdog.done.set()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if saved_stderr is not None:
            terminal, sys.__stderr__ = sys.__stderr__, original
            terminal.close()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        stop_active(app.trainer)
        if app.trainer is not None and not app.trainer.lives_on:
            wait_until_done(app.trainer)


def _has_tty() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


def _stderr_to_run_log(handle: RunHandle | None) -> int | None:
    """A run in this process: what C++ code (PyTorch's warnings) writes to stderr goes to the run's log, where the
    dashboard shows it, instead of over the screen. Returns the saved stderr descriptor to restore."""
    if not isinstance(handle, LocalRun) or os.environ.get("TEXTUAL_DRIVER"):
        return None
    from engine.fileio import open_nofollow

    try:
        fd = open_nofollow(os.path.join(handle.run_dir, "runner.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                           handle.trainer.file_mode)
    except OSError:  # a link planted there included: C++ warnings then stay on the terminal
        return None
    sys.stderr.flush()
    saved = os.dup(2)
    # Textual draws on sys.__stderr__: it stays the terminal (a descriptor of its own), while descriptor 2, where
    # C++ code writes, goes to the log. (Without this the whole dashboard went into runner.log, the screen blank.)
    sys.__stderr__ = os.fdopen(os.dup(saved), "w", encoding=getattr(sys.__stderr__, "encoding", None) or "utf-8",
                               errors="replace", buffering=1)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


def _exit_status(app: "N2NApp") -> int:
    if app.return_code:
        return app.return_code
    return 1 if app.trainer is not None and app.trainer.state == RunState.FAILED else 0


def run_dashboard(trainer, store, args: argparse.Namespace) -> int:
    """Open the dashboard on ``trainer`` (not yet started), train in a worker thread, return the exit status:
    0, 1 when the run failed, 128 + N when signal N ended it."""
    app = N2NApp(args, store=store, trainer=trainer)
    _run_app(app)
    return _exit_status(app)


def run_sweep_view(driver, store, args: argparse.Namespace) -> int:
    """The sweep view on ``driver`` (which it runs); leaving it stops the sweep and waits for Tune to wind down."""
    app = N2NApp(args, store=store, sweep=driver)
    _run_app(app)
    driver.stop()
    if app.sweep_screen is not None and app.sweep_screen.thread is not None:
        app.sweep_screen.thread.join(60)
    return _exit_status(app)


def run_launcher(args: argparse.Namespace, store=None, make_trainer: Callable | None = None) -> int:
    app = N2NApp(args, store=store, make_trainer=make_trainer)
    _run_app(app)
    return _exit_status(app)
