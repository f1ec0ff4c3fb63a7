"""Sweeps: many runs of one search space, searched by Ray Tune (embedded local Ray by default, an existing cluster
with ``--address``); we write no scheduler of our own: ASHA, PBT (``sessions.pbt``) or none from Tune, search spaces
from Tune's samplers.

A sweep is described by a TOML file (``load_spec``, validated before Ray starts: every bad key gets one line naming
it). Each trial runs the ordinary ``Trainer`` in a Ray worker (``trial_main``) and reports every evaluation to Tune:
its PSNR (what ASHA and PBT judge) and, as a Tune checkpoint, the best weights and the full training state as of that
evaluation (what a resume, or PBT handing it to another trial, continues). Its steps and events travel through the
sweep's mailbox (``sessions.trial_control``), as do the commands of whoever steers it. The *driver* (``SweepDriver``,
in the process that started the sweep) turns all that into an ordinary run in the sessions store per trial
(``Recorder``, best weights copied into the run folder), so trials on other machines never touch the SQLite file.
Ray is imported lazily: without it everything else works, and ``sweep`` says how to install it.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import patches
from engine.fileio import atomic_write_bytes, make_dir
from engine.states import LIVE, UNDERWAY, RunState

from . import ray_cluster  # noqa: F401  (it sets Tune's environment: before Tune loads)
from .ray_cluster import tune_space
from .sweep_spec import SpecError, SweepSpec
from .trial import trial_main
from .trial_control import Steering, TrialRun  # noqa: F401  (TrialRun: a trial as a RunHandle, for the view)


@dataclass
class TrialView:
    """What the driver knows of one trial (the sweep view's row)."""
    trial: str
    run: str
    params: dict
    state: str = RunState.PENDING
    step: int = 0
    total_steps: int = 0
    psnr: float | None = None
    best_psnr: float | None = None
    best_step: int | None = None
    noisy_psnr: float | None = None     # the noisy input's own PSNR on the trial's validation images
    early_stopped: bool = False
    node: str = ""
    lr: float | None = None
    history: list = field(default_factory=list)  # (step, psnr)
    last_eval: object = None
    # population-based training: each exploit of this trial, oldest first, as
    # {"step", "time", "from_trial", "from_run", "from_step", "from_psnr", "changes": {name: [old, new]}};
    # ``params`` always holds the trial's current hyper-parameters (after explores and changes by hand)
    lineage: list = field(default_factory=list)
    status: dict = field(default_factory=dict)   # what the trial last said of itself (through the mailbox)
    held: bool = False                           # a person paused it (and has not resumed it)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("trial", "run", "params", "state", "step", "total_steps", "psnr",
                                               "best_psnr", "best_step", "early_stopped", "node", "lineage")}

    @property
    def improved(self) -> bool:
        """Its training produced something: a best after step 0 (the untrained start) that beats the noisy input."""
        return (self.best_psnr is not None and (self.best_step or 0) > 0
                and (self.noisy_psnr is None or self.best_psnr > self.noisy_psnr))


class SweepDriver:
    """Runs a sweep on Ray Tune and records it: the ``sweeps`` row, one ordinary run per trial. ``listeners`` get
    one dict per sweep event (``trial_start``, ``trial_result``, ``trial_end``, ``sweep_end``), from Tune's thread."""

    def __init__(self, store, spec: SweepSpec, *, sweep_id: str | None = None, resume: bool = False):
        self.store, self.spec = store, spec
        self.resume = resume
        self.sweep_id = sweep_id or self._new_id()
        self.trials: dict[str, TrialView] = {}
        self.listeners: list = []
        self.recorders: dict[str, object] = {}
        self.trial_sinks: dict[str, list] = {}  # trial id -> viewers of that trial (a dashboard), as run events
        self._stop_trials: set[str] = set()
        self._stop_all = False
        self._lock = threading.Lock()
        self.steering: Steering | None = None  # while the sweep runs: viewers' commands to trials, their events
        self._tune_trials: dict[str, object] = {}  # trial id -> Tune's Trial (PBT explores from its config)
        self.storage = Path(spec.storage or store.root / "sweeps").resolve()
        self.state = RunState.PENDING

    @staticmethod
    def _new_id() -> str:
        return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()

    # ------------------------------------------------------------------------------------------------ control
    def stop_trial(self, trial: str) -> None:
        with self._lock:
            self._stop_trials.add(trial)

    def stop(self) -> None:
        with self._lock:
            self._stop_all = True

    def _stopper(self):
        from ray import tune

        class Stopper(_Unpickled, tune.Stopper):
            def __call__(self, trial_id, result):
                driver = self.driver
                return driver is not None and driver.trial_stop_asked(trial_id)

            def stop_all(self):
                return self.driver is not None and self.driver.sweep_stop_asked()

        return Stopper(self)

    def trial_stop_asked(self, trial_id: str) -> bool:
        with self._lock:
            return trial_id in self._stop_trials

    def sweep_stop_asked(self) -> bool:
        with self._lock:
            return self._stop_all

    def _emit(self, event: dict) -> None:
        event = {"sweep": self.sweep_id, "time": time.time(), **event}
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                pass

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> dict:
        """Run the sweep to its end (or until stopped); returns the summary (best trial and its run)."""
        import logging

        from ray import tune

        logging.getLogger("ray.tune").setLevel(logging.ERROR)  # its notes on the files we told it not to write
        spec = self.spec
        scheduler = None
        if spec.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            # time is training progress in per mille, so trials of different batch sizes meet at the same rungs
            scheduler = ASHAScheduler(time_attr="progress", max_t=1000, grace_period=max(1, round(1000 * spec.grace)),
                                      reduction_factor=2)
        elif spec.scheduler == "pbt":
            from .pbt import pbt_scheduler

            scheduler = pbt_scheduler(spec, self._exploited)
        trainable = tune.with_resources(trial_main, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
        if spec.storage is None and not self.storage.exists():  # our own folder for Tune's checkpoints: as private
            make_dir(self.storage, self.store.folder_mode)          # as the run folders (Tune's files follow umask)
        experiment = self.storage / self.sweep_id
        if self.resume:
            if not tune.Tuner.can_restore(str(experiment)):
                raise SpecError(f"sweep {self.sweep_id}: nothing to resume in {experiment}")
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
        else:
            self.store.new_sweep(self.sweep_id, spec.to_dict(), str(experiment))
            space = tune_space(spec.space)
            space["__spec__"] = spec.to_dict()
            space["__sweep__"] = self.sweep_id  # the trials find the sweep's mailbox by it
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(metric=spec.metric, mode="max", scheduler=scheduler,
                                            num_samples=spec.samples(), max_concurrent_trials=spec.concurrency,
                                            reuse_actors=True),  # a worker trains trial after trial: no restart
                run_config=tune.RunConfig(name=self.sweep_id, storage_path=str(self.storage), verbose=0,
                                          stop=self._stopper(), callbacks=[_Callback(self)],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=self._keep())))
        if self.resume:  # a restored Tuner keeps its own run config: hand it our callback and stopper again
            rc = tuner._local_tuner._run_config if hasattr(tuner, "_local_tuner") else None
            if rc is not None:
                rc.callbacks = [_Callback(self)]
                rc.stop = self._stopper()
        self.state = RunState.RUNNING
        self.store.set_sweep_state(self.sweep_id, RunState.RUNNING)
        final = RunState.FAILED
        self.steering = Steering(self)
        try:
            tuner.fit()
            # Tune answers Ctrl-C by winding down and returning: a sweep is finished only when every trial ended
            ended = [r for r in self.store.trial_runs(self.sweep_id) if r["state"] not in LIVE]
            complete = len(ended) >= spec.trial_count() and all(t.state not in UNDERWAY
                                                                 for t in self.trials.values())
            final = RunState.FINISHED if complete and not self._stop_all else RunState.STOPPED
        except KeyboardInterrupt:
            final = RunState.STOPPED
            raise
        finally:
            self.steering.shutdown()
            self.state = final
            for trial in self.trials.values():  # trials Tune never ended (Ctrl-C, a driver error): say so
                if trial.state in UNDERWAY:
                    self._end_trial(trial, RunState.STOPPED, "the sweep stopped")
            best = self.best()
            self.store.set_sweep_state(self.sweep_id, final, best.run if best else None,
                                       best.best_psnr if best else None)
            self._emit({"event": "sweep_end", "state": final, "best": best.to_dict() if best else None})
        return {"sweep": self.sweep_id, "state": final, "best": best.to_dict() if best else None,
                "trials": [t.to_dict() for t in self.trials.values()]}

    def _keep(self) -> int | None:
        """Checkpoints Tune keeps per trial: the last (its best weights and state travel in it); under PBT all of
        them (Tune hands a donor's checkpoint to another trial by its path, and deleting old ones under a limit then
        fails on paths two trials share: Ray 2.60's checkpoint manager, seen here)."""
        return 1 if self.spec.scheduler != "pbt" else None

    def best(self) -> TrialView | None:
        """The winner: the best PSNR among trials whose training improved on their start (``TrialView.improved``);
        None when none did."""
        done = [t for t in self.trials.values() if t.improved]
        return max(done, key=lambda t: t.best_psnr) if done else None

    # ---------------------------------------------------------------------------------------- Tune's callbacks
    def _start(self, trial) -> None:
        from engine.events import StateEvent

        from .recorder import Recorder

        params = {k: v for k, v in trial.config.items() if not k.startswith("__")}
        self._tune_trials[trial.trial_id] = trial
        known = self.trials.get(trial.trial_id)
        if known is not None and known.state in UNDERWAY:  # PBT restarted it (paused, or exploiting)
            known.params = params
            if known.held and self.steering is not None:  # a pause a person asked for outlives the restart
                self.steering.post(trial.trial_id, {"cmd": "pause"})
            return
        existing = self.store.find_trial_run(self.sweep_id, trial.trial_id)
        if existing is not None:  # a resumed sweep continues the trial's run
            run_id = existing
            self.store.begin_resume(run_id, 0, "the sweep resumed this trial")
        else:
            cfg = self.spec.trial_config(params)
            cfg.sweep, cfg.trial = self.sweep_id, trial.trial_id
            run_id = self.store.new_run(cfg)
        self.recorders[trial.trial_id] = Recorder(self.store, run_id)
        self._record(trial.trial_id, StateEvent(run_id, RunState.RUNNING))
        view = TrialView(trial.trial_id, run_id, params, state=RunState.RUNNING)
        self.trials[trial.trial_id] = view
        if self.steering is not None:
            self.steering.open(trial.trial_id)
        self._emit({"event": "trial_start", "trial": trial.trial_id, "run": run_id, "params": params})

    def _result(self, trial, result: dict) -> None:
        from engine.events import EvalEvent

        view = self.trials.get(trial.trial_id)
        if view is None:
            return
        if self.steering is not None:
            self.steering.drain()  # what the trial did before this result is recorded before it
        rec, run = self.recorders[trial.trial_id], view.run
        view.lr = result.get("lr", view.lr)
        total = int(result.get("total_steps") or 0)
        self._record_batch(trial.trial_id, {**result, "total_steps": total})
        ev = result.get("eval")
        if isinstance(ev, dict):
            samples = ev.get("samples") or {}
            best = result.get("best_psnr")
            self._record(trial.trial_id, EvalEvent(
                run, int(ev["step"]), int(ev["epoch"]), ev["psnr"],
                best if best is not None and math.isfinite(best) else ev["psnr"],
                *(patches.from_json(samples.get(k)) for k in ("noisy", "denoised", "clean")),
                psnr_noisy=ev.get("psnr_noisy")))
            view.psnr = ev["psnr"]
            view.history.append((int(ev["step"]), ev["psnr"]))
            if ev.get("psnr_noisy") is not None:
                view.noisy_psnr = ev["psnr_noisy"]
        # (the trial's best is taken when its weights arrive, in _checkpoint: the sweep never claims a best that
        # its run folder cannot export, e.g. when Ctrl-C comes between a result and its checkpoint)
        view.step, view.total_steps = int(result.get("step", view.step)), total or view.total_steps
        view.node = result.get("node") or view.node
        rec.flush()
        self._emit({"event": "trial_result", "trial": trial.trial_id, "run": run, "step": view.step,
                    "total_steps": view.total_steps, "psnr": view.psnr, "best_psnr": view.best_psnr,
                    "node": view.node})

    def _record_batch(self, trial_id: str, batch: dict) -> None:
        """A trial's steps and events (``{"steps": [[step, epoch, loss, lr, img/s, time]], "events": [...],
        "total_steps"}``), from its result or its mailbox, into its run's record."""
        from engine.events import ControlEvent, StateEvent, StepEvent

        view = self.trials.get(trial_id)
        if view is None or trial_id not in self.recorders:
            return
        run = view.run
        total = int(batch.get("total_steps") or (view.status or {}).get("total_steps") or view.total_steps or 0)
        steps = batch.get("steps") or []
        for s, e, loss, lr, ips, t in steps:
            loss = float("nan") if loss is None else loss
            self._record(trial_id, StepEvent(run, s, e, loss, lr, ips, total, time=t))
        if steps:
            view.step, view.lr, view.total_steps = int(steps[-1][0]), steps[-1][3], total or view.total_steps
        for d in batch.get("events") or []:
            if d.get("event") == "control":
                self._record(trial_id, ControlEvent(run, d["action"], d.get("detail", ""), d.get("step", 0),
                                                    d.get("value"), d.get("name"), time=d.get("time", time.time())))
            elif d.get("event") == "state" and d.get("state") in LIVE:
                view.state = d["state"]
                self._record(trial_id, StateEvent(run, d["state"], d.get("message", ""), d.get("step", 0),
                                                  d.get("epoch", 0)))

    def _exploited(self, trial, donor, old: dict, new: dict, result: dict, donor_result: dict) -> None:
        """PBT replaced ``trial``'s training with ``donor``'s (as of ``donor_result``) and explores ``new`` settings:
        recorded on the trial's run (an event; its settings as the trial applies them) and in its lineage."""
        from engine.events import ControlEvent

        view, source = self.trials.get(trial.trial_id), self.trials.get(donor.trial_id)
        if view is None or source is None:
            return
        changes = {k: [old.get(k), v] for k, v in new.items() if not k.startswith("__") and old.get(k) != v}
        psnr = donor_result.get("psnr")
        entry = {"step": int(result.get("step", view.step)), "time": time.time(), "from_trial": donor.trial_id,
                 "from_run": source.run, "from_step": int(donor_result.get("step", source.step)),
                 "from_psnr": psnr if isinstance(psnr, (int, float)) and math.isfinite(psnr) else None,
                 "changes": changes}
        view.lineage.append(entry)
        view.params = {k: v for k, v in new.items() if not k.startswith("__")}
        psnr = f", {entry['from_psnr']:.2f} dB" if entry["from_psnr"] is not None else ""
        said = ", ".join(f"{k} {_num(a)} -> {_num(b)}" for k, (a, b) in changes.items())
        self._record(trial.trial_id, ControlEvent(
            view.run, "exploit", f"took the weights of trial {donor.trial_id} (run {source.run}, step "
            f"{entry['from_step']}{psnr}); explores {said or 'the same settings'}", entry["step"]))
        self.recorders[trial.trial_id].flush()
        self._emit({"event": "exploit", "trial": trial.trial_id, "run": view.run, **{
            k: entry[k] for k in ("step", "from_trial", "from_run", "from_step", "from_psnr", "changes")}})

    def _set_by_hand(self, trial_id: str, name: str, value) -> None:
        """A person changed a trial's setting: Tune's copy of its config follows, so PBT's later explores (and a
        restart of the trial) start from it."""
        view, tune_trial = self.trials.get(trial_id), self._tune_trials.get(trial_id)
        if view is None:
            return
        old = view.params.get(name)
        if tune_trial is not None and name in tune_trial.config:
            tune_trial.config[name] = value
        if name in view.params:
            view.params = {**view.params, name: value}
        self._emit({"event": "trial_set", "trial": trial_id, "run": view.run, "name": name, "value": value,
                    "old": old, "by": "hand"})

    def _checkpoint(self, trial, checkpoint) -> None:
        """The trial's best weights (and latest state) into its run's folder, so export and resume work here."""
        from engine.events import SavedEvent
        from engine.train_state import BEST_FILE, BEST_META, STATE_FILE, read_best_meta

        view = self.trials.get(trial.trial_id)
        if view is None:
            return
        run_dir = self.store.run_dir(view.run)
        with checkpoint.as_directory() as d:
            meta_before = read_best_meta(run_dir)
            for name in (BEST_FILE, STATE_FILE, BEST_META):  # best.json last: it vouches for best.pth
                if (Path(d) / name).is_file():  # the run's own files: the store's mode, whatever Tune's copy had
                    atomic_write_bytes(run_dir / name, (Path(d) / name).read_bytes(), self.store.file_mode)
        meta = read_best_meta(run_dir)
        if meta and meta != meta_before:
            self._record(trial.trial_id, SavedEvent(view.run, str(run_dir / BEST_FILE), meta.get("psnr"),
                                                      meta.get("step") or 0, "best"))
        if meta and meta.get("psnr") is not None:  # the best the run folder holds: what the sweep reports
            view.best_psnr, view.best_step = float(meta["psnr"]), int(meta.get("step") or 0)

    def _record(self, trial_id: str, event) -> None:
        """A trial's event into its run's record, and to whoever watches that trial."""
        self.recorders[trial_id](event)
        if event.kind == "eval":
            self.trials[trial_id].last_eval = event
        for sink in list(self.trial_sinks.get(trial_id, ())):
            try:
                sink(event)
            except Exception:
                pass

    def _complete(self, trial, error: bool = False) -> None:
        view = self.trials.get(trial.trial_id)
        if view is None or view.state not in UNDERWAY:
            return
        last = trial.last_result or {}
        final = last.get("final")
        if error:
            self._end_trial(view, RunState.FAILED, "the trial raised an error (see Ray's log)")
        elif final in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED):
            self._end_trial(view, final, "")
        elif trial.trial_id in self._stop_trials or self._stop_all:
            self._end_trial(view, RunState.STOPPED, "stopped from the sweep")
        elif view.total_steps and view.step < view.total_steps:
            view.early_stopped = True
            self._end_trial(view, RunState.STOPPED, f"early-stopped by {self.spec.scheduler.upper()} at step "
                                                    f"{view.step} of {view.total_steps}")
        else:
            self._end_trial(view, RunState.FINISHED, "")

    def _end_trial(self, view: TrialView, state: str, message: str) -> None:
        from engine.events import StateEvent

        if self.steering is not None:
            self.steering.close(view.trial)
        view.state = state
        if view.trial in self.recorders:
            self._record(view.trial, StateEvent(view.run, state, message, view.step))
        self._emit({"event": "trial_end", "trial": view.trial, "run": view.run, "state": state,
                    "early_stopped": view.early_stopped, "message": message, "best_psnr": view.best_psnr})


class _Unpickled:
    """Tune pickles its run config (callbacks, stopper) into the experiment: ours keep the driver (a store
    connection, locks) only in memory; a restored sweep hands them a driver again."""

    def __init__(self, driver: SweepDriver | None = None):
        self.driver = driver

    def __getstate__(self):
        return {"driver": None}


def _Callback(driver: SweepDriver):
    from ray import tune

    class Callback(_Unpickled, tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._start(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.driver is not None:
                self.driver._result(trial, result)

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if self.driver is not None:
                self.driver._checkpoint(trial, checkpoint)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._complete(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.driver is not None:
                self.driver._complete(trial, error=True)

    return Callback(driver)


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
