"""``DashboardScreen``: watch and steer one training run.

The trainer runs in a Textual thread worker and calls our sink from its own thread; the sink only puts the event on
a queue. A timer on the UI side drains the queue a few times per second, coalesces it (many step events become one
status update and one batch of plot points) and redraws: the trainer never waits for the screen.
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
from textual.worker import Worker, WorkerState

from ..widgets import EventLog, LossPlot, PsnrPlot, RunStatus, SamplePatches
from .confirm import ConfirmScreen
from .lr_input import LrScreen

ACTIVE = ("idle", "running", "paused")     # states in which quitting asks first
REFRESH_HZ = 2                             # queue drains per second: state changes, evals, the log show at once
STEP_INTERVAL = 1.0                        # seconds between status/progress updates from step events
PLOT_INTERVAL = 2.0                        # seconds between loss-plot redraws while points keep coming ...
PLOT_BUDGET = 0.02                         # ... or more: it may take at most 2% of the time (big terminals)


def export_target(engine: int, export_to: str | None) -> Path:
    """Where ``s`` writes: ``--export-to`` when given, else the grader's ``Miniproject_<engine>/bestmodel.pth``."""
    if export_to:
        return Path(export_to)
    from engine.models import bestmodel_path

    return bestmodel_path(engine)


STATE_LOG_STYLE = {"paused": "yellow", "stopped": "red", "failed": "bold red", "finished": "cyan", "running": "green"}


def one_line(text: str) -> str:
    """A multi-line detail (a traceback) as its most telling line: the last non-empty one."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("l", "set_lr", "LR"),
        Binding("left_square_bracket", "scale_lr(0.5)", "LR/2", key_display="["),
        Binding("right_square_bracket", "scale_lr(2)", "LR×2", key_display="]"),
        Binding("s", "save", "Save"),
        Binding("x", "stop", "Stop"),
        Binding("r", "runs", "Runs"),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("q", "quit_run", "Quit"),
    ]

    def __init__(self, trainer, store, *, export_to: str | None = None, start: bool = True,
                 refresh_hz: float = REFRESH_HZ, plot_interval: float = PLOT_INTERVAL) -> None:
        super().__init__()
        self.trainer = trainer
        self.store = store
        self.export_to = export_to
        self.start_on_mount = start
        self.refresh_hz = refresh_hz
        self.plot_interval = plot_interval
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.state = getattr(trainer, "state", "idle") or "idle"
        self.worker: Worker | None = None
        self.exporter = None  # export_run(store, ref, to=path) -> {"path", "psnr", ...}; default sessions.export
        self.quitting = False
        self.n_steps_seen = 0
        self._loss_dirty = self._psnr_dirty = False
        self._last_plot = 0.0
        self._rate: deque[tuple[float, int]] = deque(maxlen=1024)  # (event time, step) for the ETA
        self._pending_step = None          # the latest step event not shown yet (status is refreshed at 2 Hz)
        self._last_step_shown = 0.0

    # ------------------------------------------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield RunStatus(id="status")
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="progress")  # a label would re-layout
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield LossPlot(id="loss-plot")
                yield PsnrPlot(id="psnr-plot")
            with Vertical(id="side"):
                yield SamplePatches(id="samples")
                yield EventLog(id="events")
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
        status.show_run(t.run_id, t.config.engine, str(getattr(t, "device", "") or ""), t.config.epochs,
                        getattr(t, "total_steps", 0) or 0)
        status.show_state(self.state)
        status.show_step(getattr(t, "step", 0) or 0, getattr(t, "epoch", 0) or 0, t.lr, None)
        if getattr(t, "total_steps", 0):
            self.query_one(ProgressBar).update(total=t.total_steps, progress=getattr(t, "step", 0) or 0)
        if getattr(t, "best_psnr", None) is not None:
            status.show_best(t.best_psnr, t.best_step)
        self.query_one(LossPlot).redraw()
        self.query_one(PsnrPlot).redraw()
        t.add_sink(self.events.put)
        self.set_interval(1 / self.refresh_hz, self.drain, name="drain")
        if self.start_on_mount:
            self.start_training()

    def start_training(self) -> None:
        cfg = self.trainer.config
        noise = "" if cfg.data.startswith("course:") else f", {cfg.noise} noise"  # course data comes noisy
        self.log_event(f"run {self.run_id}: engine {cfg.engine}, {cfg.data}{noise}")
        if self.state == "idle":
            self.query_one(RunStatus).show_state("loading")
        self.worker = self.run_worker(self.trainer.run, name="trainer", group="trainer", thread=True,
                                      exit_on_error=False)

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
        if self._loss_dirty and (force_plots or self.state != "running"
                                 or time.monotonic() - self._last_plot >= self._plot_gap()):
            self.query_one(LossPlot).redraw()
            self._loss_dirty = False
            self._last_plot = time.monotonic()
        if self.quitting and self.worker is not None and self.worker.is_finished and self.events.empty():
            self.app.exit(0)
        return len(batch)

    def _plot_gap(self) -> float:
        cost = self.query_one(LossPlot).render_seconds
        return max(self.plot_interval, cost / PLOT_BUDGET)

    def apply(self, batch: list) -> None:
        status = self.query_one(RunStatus)
        losses, last_step, last_eval = [], None, None
        for e in batch:
            kind = e.kind
            if kind == "step":
                losses.append((e.step, e.loss))
                last_step = e
                self._rate.append((e.time, e.step))
            elif kind == "eval":
                self.query_one(PsnrPlot).add_point(e.step, e.psnr)
                self._psnr_dirty = True
                last_eval = e
                new_best = e.best_psnr is not None and e.psnr >= e.best_psnr
                self.log_event(f"eval {e.psnr:.2f} dB" + (" ★ best" if new_best else f" (best {e.best_psnr:.2f})"),
                               e.step, "bold" if new_best else "")
            elif kind == "state":
                self.state = e.state
                self._rate.clear()
                status.show_state(e.state, e.message)
                self.log_event(e.state + (f": {e.message}" if e.message else ""), e.step or None,
                               STATE_LOG_STYLE.get(e.state, ""))
                if e.message and e.state in ("paused", "failed"):  # the NaN guard, a crash: say it loudly
                    self.notify(e.message, title=f"run {e.state}", timeout=15,
                                severity="error" if e.state == "failed" else "warning")
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
            self._loss_dirty = True
        if last_step is not None:
            self._pending_step = last_step
        now = time.monotonic()
        if self._pending_step is not None and (now - self._last_step_shown >= STEP_INTERVAL or self.state != "running"
                                               or any(e.kind != "step" for e in batch)):
            e, self._pending_step, self._last_step_shown = self._pending_step, None, now
            status.show_step(e.step, e.epoch, e.lr, e.img_per_s, e.total_steps, eta=self._eta(e.total_steps))
            if e.total_steps:
                self.query_one(ProgressBar).update(total=e.total_steps, progress=e.step)
        if last_eval is not None:
            e = last_eval
            status.show_best(*self._best(e))
            if e.noisy is not None and e.denoised is not None and e.clean is not None:
                self.query_one(SamplePatches).show_samples(e.noisy, e.denoised, e.clean)

    def _best(self, e) -> tuple[float, int]:
        """(best PSNR, step it was reached at), from the plotted points when they contain it."""
        best = self.query_one(PsnrPlot).best
        if best is not None and abs(best[1] - e.best_psnr) < 1e-6:
            return e.best_psnr, best[0]
        return e.best_psnr, getattr(self.trainer, "best_step", None) or e.step

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
            self.store.add_event(self.run_id, kind, detail, getattr(self.trainer, "step", None))
        except Exception as e:  # the store must never take the dashboard down
            self.log_event(f"could not record {kind}: {e}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.state = "failed"
            self.query_one(RunStatus).show_state("failed", f"{type(err).__name__}: {err}")
            self.log_event(f"trainer crashed: {type(err).__name__}: {err}")
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.drain(force_plots=True)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE and not (self.worker is not None and self.worker.is_finished)

    # ------------------------------------------------------------------------------------------------- actions
    def action_toggle_pause(self) -> None:
        if not self.active:
            self.notify("the run is not active", severity="warning")
            return
        if self.trainer.state == "paused":
            self.trainer.resume()
        else:
            self.trainer.pause()

    def action_set_lr(self) -> None:
        self.app.push_screen(LrScreen(self.trainer.lr), self._apply_lr)

    def action_scale_lr(self, factor: float) -> None:
        self._apply_lr(self.trainer.lr * factor)

    def _apply_lr(self, lr: float | None) -> None:
        if lr is None:
            return
        try:
            self.trainer.set_lr(lr)
        except ValueError as e:
            self.notify(f"learning rate: {e}", severity="error")
            return
        self.query_one(RunStatus).show_lr(self.trainer.lr)

    def action_stop(self) -> None:
        if not self.active:
            self.notify("the run is not active", severity="warning")
            return
        self.log_event("stopping…")
        self.trainer.stop()

    def action_runs(self) -> None:
        from .runs import RunsScreen

        self.app.push_screen(RunsScreen(self.store, current=self.run_id))

    def action_zoom(self) -> None:
        from .zoom import ZoomScreen

        self.app.push_screen(ZoomScreen(self.store, self.run_id, latest=self.query_one(SamplePatches).samples))

    def action_quit_run(self) -> None:
        if self.active:
            self.app.push_screen(ConfirmScreen("The run is still going. Stop it and quit?"), self._confirmed_quit)
        else:
            self.record("quit", f"dashboard closed, run {self.state}")
            self.app.exit(0)

    def _confirmed_quit(self, yes: bool | None) -> None:
        if not yes:
            return
        self.record("quit", "dashboard closed, run stopped")
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the run and exit once the trainer's thread has returned (so the store records ``stopped``)."""
        self.quitting = True
        self.query_one(RunStatus).show_state("stopping", "")
        self.trainer.stop()
        if self.worker is None or self.worker.is_finished:
            self.app.exit(0)

    # ------------------------------------------------------------------------------------------------- save
    def action_save(self) -> None:
        if getattr(self.trainer, "best_psnr", None) is None:
            self.notify("nothing to save yet: no evaluation has run", severity="warning")
            return
        target = export_target(self.engine, self.export_to)
        self.log_event(f"exporting best weights to {target}…")
        self._check_and_export(target)

    @work(thread=True, exclusive=True, group="export")
    def _check_and_export(self, target: Path, force: bool = False) -> None:
        """The verified export; it refuses to replace better weights, and then we ask."""
        from sessions.export import BetterTargetError

        export_run = self.exporter
        if export_run is None:
            from sessions.export import export_run
        try:
            result = export_run(self.store, self.run_id, to=str(target), dataset=getattr(self.trainer, "dataset", None),
                                force=force)
        except BetterTargetError as e:
            question = (f"{target} already scores {e.theirs:.2f} dB, better than this run's best {e.ours:.2f} dB "
                        f"on the same validation images. Replace it?")
            self.app.call_from_thread(self.app.push_screen, ConfirmScreen(question),
                                      lambda yes: self._check_and_export(target, True) if yes
                                      else self._export_cancelled(target))
            return
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.app.call_from_thread(self._export_done, None, f"export failed: {msg}")
            return
        self.app.call_from_thread(self._export_done, result, None)

    def _export_cancelled(self, target: Path) -> None:
        self.log_event(f"export cancelled: {target} kept")
        self.record("export-cancelled", f"{target} kept (better PSNR)")

    def _export_done(self, result: dict | None, error: str | None) -> None:
        if error:
            self.log_event(error)
            self.notify(error, severity="error")
            self.record("export-failed", error)
            return
        psnr = result.get("psnr")
        text = f"saved {result['path']}" + (f" ({psnr:.2f} dB, verified)" if psnr is not None else " (verified)")
        self.log_event(text)
        self.notify(text)  # export_run itself records the "export" event in the store
