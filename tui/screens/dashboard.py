"""``DashboardScreen``: watch and steer one training run.

The run is a ``RunHandle`` (``sessions.handle``): a ``RemoteRun`` (a runner process, through its control socket), a
``LocalRun`` (a Trainer in this process, ``train --in-process``) or a sweep's ``TrialRun``; the screen does not care
which. Its events reach our
sink from another thread; the sink only puts them on a queue. A timer on the UI side drains the queue a few times per
second, coalesces it (many step events become one status update and one batch of plot points) and redraws: the run
never waits for the screen. What happened before the screen opened (an attach, a resume) is read from the store.
"""
from __future__ import annotations

import queue
import time
from collections import deque
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar

from engine.errors import first_line
from engine.specs import CROP
from engine.states import ACTIVE, RunState
from sessions.handle import RunHandle

from ..widgets import EventLog, LogPane, LossPlot, PsnrPlot, RunStatus, SamplePatches, SystemPane
from ..widgets.event_log import STATE_LOG_STYLE, backfill_entries, eval_entry, one_line
from .confirm import ConfirmScreen
from .export_flow import ExportFlow
from .hyper import HyperScreen
from .lr_input import LrScreen
from .quit import QuitScreen

BACKFILL_EVENTS = 200                      # the newest stored events shown in the log of an attached run
REFRESH_HZ = 2                             # queue drains per second: state changes, evals, the log show at once
STEP_INTERVAL = 1.0                        # seconds between status/progress updates from step events
PLOT_INTERVAL = 2.0                        # seconds between loss-plot redraws while points keep coming ...
PLOT_BUDGET = 0.02                         # ... or more: it may take at most 2% of the time (big terminals)


class DashboardScreen(ExportFlow, Screen):
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("l", "set_lr", "LR"),
        Binding("left_square_bracket", "scale_lr(0.5)", "LR/2", key_display="[", show=False),
        Binding("right_square_bracket", "scale_lr(2)", "LR×2", key_display="]", show=False),
        Binding("h", "hyper", "Hyper"),
        Binding("s", "save", "Save"),
        Binding("x", "stop", "Stop"),
        Binding("r", "runs", "Runs"),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("v", "toggle_log", "Log", show=False),
        Binding("q", "quit_run", "Quit"),
    ]

    def __init__(self, trainer: RunHandle, store, *, export_to: str | None = None, start: bool = True,
                 refresh_hz: float = REFRESH_HZ, plot_interval: float = PLOT_INTERVAL, on_leave=None,
                 marks=()) -> None:
        super().__init__()
        self.marks = list(marks)  # the user's reference levels (sessions.marks.Mark) on the PSNR plot
        self.on_leave = on_leave  # called with this screen when the user leaves it (default: the app exits)
        self.trainer = trainer
        self.store = store
        self.export_to = export_to
        self.start_on_mount = start
        self.refresh_hz = refresh_hz
        self.plot_interval = plot_interval
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.state = trainer.state or RunState.IDLE
        self.quitting = False
        self._last_loss_step = 0           # steps at or before it are on the plot already (backfill, resync)
        self._last_psnr_step = -1
        self.n_steps_seen = 0
        self._loss_dirty = self._psnr_dirty = False
        self._last_plot = 0.0
        self._rate: deque[tuple[float, int]] = deque(maxlen=1024)  # (event time, step) for the ETA
        self._pending_step = None          # the latest step event not shown yet (status is refreshed at 2 Hz)
        self._last_step_shown = 0.0

    # ------------------------------------------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield RunStatus(id="status")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="progress")  # a label: re-layouts
            yield SystemPane(id="system")
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield LossPlot(id="loss-plot")
                yield PsnrPlot(id="psnr-plot")
            with Vertical(id="side"):
                yield SamplePatches(id="samples")
                yield EventLog(id="events")
                yield LogPane(id="log")
        yield Footer()

    @property
    def run_id(self) -> str:
        return self.trainer.run_id

    @property
    def engine(self) -> int:
        return self.trainer.config.engine

    def on_mount(self) -> None:
        t = self.trainer
        status = self.query_one(RunStatus)
        status.show_run(t.run_id, t.config.engine, str(t.device or ""), t.config.epochs, t.total_steps or 0)
        status.show_state(self.state, t.message or "")
        status.show_step(t.step or 0, t.epoch or 0, t.lr, None)
        if t.total_steps:
            self.query_one(ProgressBar).update(total=t.total_steps, progress=t.step or 0)
        if t.best_psnr is not None:
            status.show_best(t.best_psnr, t.best_step)
            self.query_one(LossPlot).show_best_step(t.best_step)
        self.query_one(PsnrPlot).show_marks(self.marks)
        t.add_sink(self.events.put)
        self.backfill()
        self.query_one(LogPane).display = False
        self.query_one(LogPane).follow(Path(t.run_dir) / "runner.log" if t.run_dir else None)
        self.set_interval(1 / self.refresh_hz, self.drain, name="drain")
        self.set_interval(1.0, self._poll_log, name="log")
        if self.start_on_mount:
            self.start_training()

    def backfill(self) -> None:
        """What the store holds of this run (every step's loss, every evaluation, the newest events) and the latest
        patches: an attached or resumed run's screen starts where the run is, not empty."""
        loss, psnr = self.query_one(LossPlot), self.query_one(PsnrPlot)
        try:
            run = self.store.get_run(self.run_id)
        except Exception:  # nothing recorded (a fake store, a run not in it): the live events are all there is
            run = None
        if run is not None:
            metrics = run.get("metrics") or []
            losses = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
            evals = [(m["step"], m["psnr"]) for m in metrics if m.get("psnr") is not None]
            loss.clear_points()
            loss.add_points(losses)
            loss.add_lr_points([(m["step"], m["lr"]) for m in metrics if m.get("loss") is not None])
            system = self.store.system(self.run_id) if hasattr(self.store, "system") else []
            if system:
                from engine.events import SystemEvent

                last = system[-1]
                self.query_one(SystemPane).show_sample(SystemEvent(self.run_id, **{k: last[k] for k in (
                    "step", "cpu", "rss", "gpu_util", "gpu_mem", "disk_free", "threads", "busy")}))
            psnr.clear_points()
            for step, value in evals:
                psnr.add_point(step, value)
            if run.get("psnr_noisy") is not None:  # the baseline, as the store keeps it (schema 7)
                psnr.show_noisy(run["psnr_noisy"])
            self._last_loss_step = losses[-1][0] if losses else 0
            self._last_psnr_step = evals[-1][0] if evals else -1
            log = self.query_one(EventLog)
            log.clear_entries()
            for text, step, style in backfill_entries(run.get("events") or [], evals)[-BACKFILL_EVENTS:]:
                log.add_event(text, step, style)
        patches = self.trainer.latest_patches()
        if patches is not None:
            self.query_one(SamplePatches).show_samples(*patches)
        loss.redraw()
        psnr.redraw()

    def start_training(self) -> None:
        """Follow the run (a runner: start reading its socket; in-process: start the trainer's thread)."""
        cfg = self.trainer.config
        noise = "" if cfg.data.startswith("course:") else f", {cfg.noise} noise"  # course data comes noisy
        noise += ", fresh pairs every epoch" if cfg.fresh else ""
        noise += ", float targets" if cfg.float_targets else ""
        noise += f", {cfg.crop} px training crops" if cfg.crop != CROP else ""
        self.log_event(f"run {self.run_id}: engine {cfg.engine}, {cfg.data}{noise} ({self.trainer.where})")
        if self.state == RunState.IDLE:
            self.query_one(RunStatus).show_state("loading")
        self.trainer.start()

    # --------------------------------------------------------------------------------------------- event pump
    def drain(self, force_plots: bool = False) -> int:
        """Apply every queued trainer event to the widgets; returns how many were applied."""
        batch = []
        while True:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        if batch:
            self.apply(batch)
        if self._psnr_dirty:  # evaluations are rare: show them at once
            self.query_one(PsnrPlot).redraw()
            self._psnr_dirty = False
        if self._loss_dirty and (force_plots or self.state != RunState.RUNNING
                                 or time.monotonic() - self._last_plot >= self._plot_gap()):
            self.query_one(LossPlot).redraw()
            self._loss_dirty = False
            self._last_plot = time.monotonic()
        if self.quitting and not self.active and self.events.empty():
            self.leave()
        return len(batch)

    def _plot_gap(self) -> float:
        cost = self.query_one(LossPlot).render_seconds
        return max(self.plot_interval, cost / PLOT_BUDGET)

    def apply(self, batch: list) -> None:
        status = self.query_one(RunStatus)
        losses, lrs, last_step, last_eval = [], [], None, None
        for e in batch:
            kind = e.kind
            if kind == "step":
                if e.step > self._last_loss_step:  # not already drawn from the store
                    losses.append((e.step, e.loss))
                    lrs.append((e.step, e.lr))
                    self._last_loss_step = e.step
                last_step = e
                self._rate.append((e.time, e.step))
            elif kind == "system":
                self.query_one(SystemPane).show_sample(e)
            elif kind == "resync":  # the runner dropped events we had not read: the store has them
                self.backfill()
                self.log_event("fell behind the run: reloaded its history", e.step or None)
            elif kind == "eval":
                if e.step > self._last_psnr_step:
                    self.query_one(PsnrPlot).add_point(e.step, e.psnr)
                    self._last_psnr_step = e.step
                self.query_one(PsnrPlot).show_noisy(e.psnr_noisy)
                self._psnr_dirty = True
                last_eval = e
                text, style = eval_entry(e.psnr, e.best_psnr)
                self.log_event(text, e.step, style)
            elif kind == "state":
                self.state = e.state
                self._rate.clear()
                status.show_state(e.state, e.message)
                self.log_event(e.state + (f": {e.message}" if e.message else ""), e.step or None,
                               STATE_LOG_STYLE.get(e.state, ""))
                if e.message and e.state in ("paused", "failed"):  # the NaN guard, a crash: say it loudly
                    self.notify(e.message, title=f"run {e.state}", timeout=15,
                                severity="error" if e.state == RunState.FAILED else "warning")
            elif kind == "control":
                self.log_event(f"{e.action}" + (f" {one_line(e.detail)}" if e.detail else ""), e.step or None)
                if e.action == "lr":
                    status.show_lr(self.trainer.lr)
            elif kind == "saved":
                if e.what not in ("best", "state"):  # routine checkpoints: the eval and pause lines imply them
                    psnr = f" ({e.psnr:.2f} dB)" if e.psnr is not None else ""
                    self.log_event(f"saved {e.what}: {e.path}{psnr}", e.step or None)
        if losses:
            self.n_steps_seen += len(losses)
            self.query_one(LossPlot).add_points(losses)
            self.query_one(LossPlot).add_lr_points(lrs)
            self._loss_dirty = True
        if last_step is not None:
            self._pending_step = last_step
        now = time.monotonic()
        due = now - self._last_step_shown >= STEP_INTERVAL or self.state != RunState.RUNNING \
            or any(e.kind != "step" for e in batch)
        if self._pending_step is not None and due:
            e, self._pending_step, self._last_step_shown = self._pending_step, None, now
            status.show_step(e.step, e.epoch, e.lr, e.img_per_s, e.total_steps, eta=self._eta(e.total_steps))
            if e.total_steps:
                self.query_one(ProgressBar).update(total=e.total_steps, progress=e.step)
        if last_eval is not None:
            e = last_eval
            best, at = self._best(e)
            status.show_best(best, at)
            self.query_one(LossPlot).show_best_step(at)
            self._loss_dirty = True
            if e.noisy is not None and e.denoised is not None and e.clean is not None:
                self.query_one(SamplePatches).show_samples(e.noisy, e.denoised, e.clean)

    def _best(self, e) -> tuple[float, int]:
        """(best PSNR, step it was reached at), from the plotted points when they contain it."""
        best = self.query_one(PsnrPlot).best
        if best is not None and abs(best[1] - e.best_psnr) < 1e-6:
            return e.best_psnr, best[0]
        return e.best_psnr, self.trainer.best_step or e.step

    def _eta(self, total_steps: int) -> float | None:
        if len(self._rate) < 2 or not total_steps:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (total_steps - s1) * (t1 - t0) / (s1 - s0)

    def log_event(self, text: str, step: int | None = None, style: str = "") -> None:
        self.query_one(EventLog).add_event(text, step, style)

    def record(self, kind: str, detail: str) -> None:
        """Record an action only the UI knows about (export, quit) in the sessions store."""
        try:
            self.store.add_event(self.run_id, kind, detail, self.trainer.step)
        except Exception as e:  # the store must never take the dashboard down
            self.log_event(f"could not record {kind}: {e}")

    @property
    def active(self) -> bool:
        """Whether the run still trains: what the screen last drew, and what the run's handle knows now (its events
        reach the handle at once, the screen at the next drain: a run that just ended must not ask to be stopped)."""
        return self.state in ACTIVE and (self.trainer.state or self.state) in ACTIVE

    # ------------------------------------------------------------------------------------------------- actions
    def _control(self, call, *args) -> None:
        """A control call; a refusal is shown, not raised. A runner answers over its socket, so its calls go off the
        UI thread; a run in this process takes them at once."""
        if self.trainer.lives_on:
            self._control_in_thread(call, *args)
            return
        try:
            call(*args)
        except Exception as e:
            self.notify(first_line(e), severity="error")

    @work(thread=True, group="control")
    def _control_in_thread(self, call, *args) -> None:
        try:
            call(*args)
        except Exception as e:
            self.app.call_from_thread(self.notify, first_line(e), severity="error")

    def action_toggle_pause(self) -> None:
        if not self.active:
            self.notify("the run is not active", severity="warning")
            return
        self._control(self.trainer.resume if self.trainer.state == RunState.PAUSED else self.trainer.pause)

    def action_hyper(self) -> None:
        hyper = self.trainer.hyperparameters()
        if not hyper:
            self.notify("this run declares no live hyper-parameters", severity="warning")
            return
        self.app.push_screen(HyperScreen(hyper), self._apply_hyper)

    def _apply_hyper(self, changes: dict | None) -> None:
        for name, value in (changes or {}).items():
            self._control(self.trainer.set_hyperparameter, name, value)

    def action_toggle_log(self) -> None:
        """The event log or the run's own log (runner.log: what it and PyTorch printed) in the side column."""
        events, log = self.query_one(EventLog), self.query_one(LogPane)
        log.display, events.display = events.display, log.display
        if log.display:
            log.poll()

    def _poll_log(self) -> None:
        log = self.query_one(LogPane)
        if log.display:
            log.poll()

    def action_set_lr(self) -> None:
        self.app.push_screen(LrScreen(self.trainer.lr), self._apply_lr)

    def action_scale_lr(self, factor: float) -> None:
        self._apply_lr(self.trainer.lr * factor)

    def _apply_lr(self, lr: float | None) -> None:
        if lr is None:
            return
        self._control(self._set_lr, lr)

    def _set_lr(self, lr: float) -> None:
        try:
            self.trainer.set_hyperparameter("lr", lr)
        except ValueError as e:
            raise ValueError(f"learning rate: {e}") from None
        if self.trainer.lives_on:
            self.app.call_from_thread(self.query_one(RunStatus).show_lr, lr)
        else:
            self.query_one(RunStatus).show_lr(lr)

    def action_stop(self) -> None:
        if not self.active:
            self.notify("the run is not active", severity="warning")
            return
        # one key would end hours of training: ask, as q does (a stopped run can be resumed, but not undone)
        self.app.push_screen(ConfirmScreen(f"Stop run {self.run_id}? Its state is saved; n2n-tui train --resume "
                                           f"{self.run_id} continues it."), self._stop_answer)

    def _stop_answer(self, yes: bool | None) -> None:
        if yes and self.active:
            self.log_event("stopping…")
            self._control(self.trainer.stop, "stopped from the dashboard (x)")

    def action_runs(self) -> None:
        from .runs import RunsScreen

        self.app.push_screen(RunsScreen(self.store, current=self.run_id))

    def action_zoom(self) -> None:
        from .zoom import ZoomScreen

        self.app.push_screen(ZoomScreen(self.store, self.run_id, latest=self.query_one(SamplePatches).samples))

    def action_quit_run(self) -> None:
        if not self.active:
            self.record("quit", f"dashboard closed, run {self.state}")
            self.leave()
        elif self.trainer.lives_on:
            hint = "back to the sweep" if self.on_leave is not None else "n2n-tui attach brings you back"
            self.app.push_screen(QuitScreen(self.run_id, hint), self._quit_answer)
        else:
            self.app.push_screen(ConfirmScreen("The run lives in this window (--in-process). Stop it and quit?"),
                                 lambda yes: self._quit_answer("stop" if yes else None))

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "detach":
            self.record("detach", f"a viewer detached; the run goes on (runner pid {self.trainer.pid})")
            self.leave()
        elif answer == "stop":
            self.record("quit", "dashboard closed, run stopped")
            self.shutdown()

    def leave(self) -> None:
        if self.on_leave is not None:
            self.on_leave(self)
        else:
            self.app.exit(0)

    def shutdown(self) -> None:
        """Stop the run and exit once it says it stopped (so the store records ``stopped``)."""
        self.quitting = True
        self.query_one(RunStatus).show_state("stopping", "")
        self._control(self.trainer.stop, "stopped from the dashboard (q)")
