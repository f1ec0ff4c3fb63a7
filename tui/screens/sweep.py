"""``SweepScreen``: a sweep's trials live, best first; the selected trial's curves against the leader's, or (``p``)
the population: whose weights each trial took, when (population-based training); keys to stop a trial or the sweep,
open a trial in the ordinary dashboard, and export the best trial's weights.

The sweep runs in a thread of this process (``SweepDriver.run``, Ray Tune underneath); its events arrive on a queue
that a timer drains, as in the dashboard, so Tune never waits for the screen.
"""
from __future__ import annotations

import queue
import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Label

from engine.errors import first_line
from engine.states import UNDERWAY

from ..widgets import EventLog, LossPlot, PopulationView, PsnrPlot, TrialsTable
from ..widgets.population import exploit_entry, trial_set_entry
from .confirm import ConfirmScreen
from .dashboard import DashboardScreen

REFRESH_HZ = 2
TAGS_EVERY = 5.0  # seconds between two looks at the tags of the trials' runs (n2n-tui tag sets them from any shell)


class TrialDashboard(DashboardScreen):
    """The ordinary dashboard on one trial of the sweep, opened from the sweep view: ``q`` and ``esc`` go back to
    it at once (the trial trains on there; ``x`` stops it), and the footer says so."""

    BINDINGS = [Binding("q,escape", "back", "Back")]

    def action_back(self) -> None:
        if self.active:
            self._quit_answer("detach")  # recorded as a viewer that left; the sweep goes on
        else:
            self.action_quit_run()


class SweepScreen(Screen):
    BINDINGS = [
        Binding("x", "stop_trial", "Stop trial"),
        Binding("S", "stop_sweep", "Stop sweep"),
        Binding("enter", "open_trial", "Open", show=False),
        Binding("o", "open_trial", "Open"),
        Binding("e", "export_best", "Export best"),
        Binding("p", "population", "Population"),
        Binding("q", "quit_sweep", "Quit"),
    ]

    def __init__(self, driver, store, *, start: bool = True) -> None:
        super().__init__()
        self.driver, self.store = driver, store
        self.start_on_mount = start
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.error: str | None = None
        self._shown_curves: tuple | None = None
        self._tags: dict[str, str] = {}  # run id -> its tag
        self._tags_read = float("-inf")

    def compose(self) -> ComposeResult:
        yield Label("", id="sweep-title")
        yield TrialsTable(id="trials")
        # a population-based sweep opens on its population: at 80x24 each plot is a few rows high, and its jumps
        # (a trial taking another's weights) are what the population view explains; ``p`` switches
        shown = "population" if self.driver.spec.scheduler == "pbt" else "sweep-plots"
        with Horizontal(id="sweep-main"):
            with ContentSwitcher(id="sweep-view", initial=shown):
                with Vertical(id="sweep-plots"):
                    yield PsnrPlot(id="psnr-plot", title="validation PSNR (dB): selected vs leader")
                    yield LossPlot(id="loss-plot", title="loss (log scale): selected vs leader")
                yield PopulationView(id="population")
            yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.driver.listeners.append(self.events.put)
        self.set_interval(1 / REFRESH_HZ, self.drain, name="drain")
        self._title()
        self.query_one(TrialsTable).focus()
        from sessions.ray_cluster import NOTES

        for note in NOTES:  # what Ray said as it started: here, not on the terminal the view took over
            self.query_one(EventLog).add_event(f"Ray: {note}", style="dim")
        if self.start_on_mount:
            self.thread = threading.Thread(target=self._run, name=f"sweep-{self.driver.sweep_id}", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.driver.run()
        except Exception as e:  # shown, not raised: Ray's errors are long
            self.error = first_line(e)
            self.events.put({"event": "sweep_error", "error": self.error})

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # ------------------------------------------------------------------------------------------------ updates
    def drain(self) -> None:
        changed = False
        while True:
            try:
                e = self.events.get_nowait()
            except queue.Empty:
                break
            changed = True
            self._log(e)
        if time.monotonic() - self._tags_read >= TAGS_EVERY:
            changed = self._read_tags() or changed
        if changed:
            self.query_one(TrialsTable).show_trials([{**t.to_dict(), "tag": self._tags.get(t.run, "")}
                                                     for t in self.driver.trials.values()])
            self.show_population()
            self._title()
        self.show_curves()

    @property
    def population_shown(self) -> bool:
        return self.query_one("#sweep-view", ContentSwitcher).current == "population"

    def show_population(self) -> None:
        self.query_one(PopulationView).show_population([t.to_dict() for t in self.driver.trials.values()],
                                                       self.driver.spec.scheduler,
                                                       self.query_one(TrialsTable).cursor_trial)

    def _read_tags(self) -> bool:
        """The tags of the trials' runs, from the store; whether they changed."""
        self._tags_read = time.monotonic()
        try:
            tags = {r["id"]: r.get("tag") or "" for r in self.store.trial_runs(self.driver.sweep_id)}
        except Exception:  # the store must never take the view down
            return False
        changed, self._tags = tags != self._tags, tags
        return changed

    def _log(self, e: dict) -> None:
        log = self.query_one(EventLog)
        kind = e["event"]
        if kind == "trial_start":
            log.add_event(f"{e['trial']} started: {', '.join(f'{k}={v}' for k, v in e['params'].items())}")
        elif kind == "trial_end":
            tag = " (early-stopped)" if e.get("early_stopped") else ""
            log.add_event(f"{e['trial']} {e['state']}{tag}" + (f": {e['message']}" if e.get("message") else ""))
        elif kind == "exploit":
            log.add_event(exploit_entry(e), style="cyan")
        elif kind == "trial_set":
            log.add_event(trial_set_entry(e), style="yellow")
        elif kind == "sweep_end":
            log.add_event(f"sweep {e['state']}", style="bold")
        elif kind == "sweep_error":
            log.add_event(f"sweep failed: {e['error']}", style="bold red")
            self.notify(e["error"], title="sweep failed", severity="error", timeout=15)

    def _title(self) -> None:
        d = self.driver
        trials = list(d.trials.values())
        done = sum(t.state not in UNDERWAY for t in trials)
        best = d.best()
        lead = f" · leader {best.trial} {best.best_psnr:.2f} dB" if best and best.best_psnr is not None else ""
        exploits = sum(len(t.lineage) for t in trials)
        pbt = f" · {exploits} exploit{'s' * (exploits != 1)}" if d.spec.scheduler == "pbt" or exploits else ""
        self.query_one("#sweep-title", Label).update(
            f"sweep {d.sweep_id} · {d.state} · {done}/{d.spec.trial_count()} trials done · "
            f"scheduler {d.spec.scheduler}{pbt}{lead}")

    def show_curves(self) -> None:
        """The selected trial's PSNR and loss against the leader's (read from what the driver recorded); not while
        the population hides them (the store's loss points are read again when they show)."""
        if self.population_shown:
            return
        table = self.query_one(TrialsTable)
        chosen = table.cursor_trial
        best = self.driver.best()
        picks = [t for t in (chosen, best.trial if best else None) if t]
        picks = list(dict.fromkeys(picks))
        views = [self.driver.trials[t] for t in picks if t in self.driver.trials]
        key = tuple((v.trial, len(v.history), v.step) for v in views)
        if key == self._shown_curves:
            return
        self._shown_curves = key
        psnr = self.query_one(PsnrPlot)
        noisy = [v.noisy_psnr for v in views if v.noisy_psnr is not None]
        if noisy:  # every trial validates on the same images
            psnr.show_noisy(noisy[0])
        psnr.show_runs([(v.trial, [s for s, _ in v.history], [p for _, p in v.history]) for v in views])
        losses = []
        for v in views:
            try:
                metrics = self.store.get_run(v.run, events=False)["metrics"]
            except Exception:
                metrics = []
            points = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
            losses.append((v.trial, [s for s, _ in points], [x for _, x in points]))
        self.query_one(LossPlot).show_runs(losses)

    def on_data_table_row_highlighted(self, event) -> None:
        self._shown_curves = None
        self.show_curves()
        self.show_population()  # the selected trial's line, highlighted

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_open_trial()

    # ------------------------------------------------------------------------------------------------- keys
    def action_stop_trial(self) -> None:
        trial = self.query_one(TrialsTable).cursor_trial
        view = self.driver.trials.get(trial) if trial else None
        if view is None or view.state != "running":
            self.notify("put the cursor on a running trial", severity="warning")
            return
        self.driver.stop_trial(trial)
        self.query_one(EventLog).add_event(f"{trial}: stop asked (at its next evaluation)")

    def action_stop_sweep(self) -> None:
        if not self.running:
            self.notify("the sweep is not running", severity="warning")
            return
        self.driver.stop()
        self.query_one(EventLog).add_event("sweep: stop asked (each trial stops at its next evaluation)")

    def action_open_trial(self) -> None:
        trial = self.query_one(TrialsTable).cursor_trial
        if not trial or trial not in self.driver.trials:
            return
        from sessions.sweep import TrialRun

        handle = TrialRun(self.driver, trial)
        self.app.push_screen(TrialDashboard(handle, self.store, export_to=getattr(self.app.args, "export_to", None),
                                            start=False, on_leave=self._back_from_trial))

    def _back_from_trial(self, screen) -> None:
        screen.trainer.close()
        self.app.pop_screen()

    def action_population(self) -> None:
        """Swap the plots and the population view (the same area)."""
        switcher = self.query_one("#sweep-view", ContentSwitcher)
        switcher.current = "sweep-plots" if self.population_shown else "population"
        self._shown_curves = None
        self.show_population()
        self.show_curves()

    def action_export_best(self) -> None:
        best = self.driver.best()
        if best is None:
            self.notify("no trial has been evaluated yet", severity="warning")
            return
        self._export(best.run, False)

    @work(thread=True, exclusive=True, group="export")
    def _export(self, run_id: str, force: bool) -> None:
        from sessions.export import BetterTargetError, export_run

        try:
            r = export_run(self.store, run_id, getattr(self.app.args, "export_to", None), force=force)
        except BetterTargetError as e:
            self.app.call_from_thread(self.app.push_screen, ConfirmScreen(f"{e} Replace it?"),
                                      lambda yes: self._export(run_id, True) if yes else None)
            return
        except Exception as e:
            self.app.call_from_thread(self.notify, first_line(e),
                                      severity="error")
            return
        self.app.call_from_thread(self.notify, f"exported {r['path']} ({r['psnr']:.2f} dB, verified)")

    def action_quit_sweep(self) -> None:
        if not self.running:
            self.app.exit(0)
            return
        self.app.push_screen(ConfirmScreen("The sweep is still running. Stop it and quit?"), self._quit_answer)

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.driver.stop()
            self.app.exit(0)
