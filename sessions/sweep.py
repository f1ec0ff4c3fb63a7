"""Sweeps: many runs of one search space, searched by Ray Tune (embedded local Ray by default, an existing cluster
with ``--address``); we write no scheduler of our own: ASHA (or none) from Tune, search spaces from Tune's samplers.

A sweep is described by a TOML file (``load_spec``, validated before Ray starts: every bad key gets one line naming
it). Each trial runs the ordinary ``Trainer`` in a Ray worker (``trial_main``) and reports every evaluation to Tune:
its PSNR (what ASHA judges), the loss points and events since the last report, and, as a Tune checkpoint, the best
weights and the latest full training state. The *driver* (``SweepDriver``, in the process that started the sweep)
turns those reports into an ordinary run in the sessions store per trial (``Recorder``, best weights copied into the
run folder), so trials on other machines never touch the SQLite file. Ray is imported lazily: without it everything
else works, and ``sweep`` says how to install it.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import patches
from engine.config import RunConfig
from engine.fileio import atomic_write_bytes, make_dir
from engine.states import LIVE, PENDING_OR_RUNNING, RunState

from . import ray_cluster  # noqa: F401  (it sets Tune's environment: before Tune loads)
from .sweep_spec import SpecError, SweepSpec
from .trial import trial_main


def tune_space(space: dict) -> dict:
    """The spec's space as Ray Tune samplers (randint's high end is included, as in the spec)."""
    from ray import tune

    out = {}
    for k, (kind, args) in space.items():
        if kind == "loguniform":
            out[k] = tune.loguniform(*args)
        elif kind == "uniform":
            out[k] = tune.uniform(*args)
        elif kind == "randint":
            out[k] = tune.randint(args[0], args[1] + 1)
        elif kind == "choice":
            out[k] = tune.choice(args)
        else:
            out[k] = tune.grid_search(args)
    return out


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
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(metric=spec.metric, mode="max", scheduler=scheduler,
                                            num_samples=spec.samples(), max_concurrent_trials=spec.concurrency,
                                            reuse_actors=True),  # a worker trains trial after trial: no restart
                run_config=tune.RunConfig(name=self.sweep_id, storage_path=str(self.storage), verbose=0,
                                          stop=self._stopper(), callbacks=[_Callback(self)],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        if self.resume:  # a restored Tuner keeps its own run config: hand it our callback and stopper again
            rc = tuner._local_tuner._run_config if hasattr(tuner, "_local_tuner") else None
            if rc is not None:
                rc.callbacks = [_Callback(self)]
                rc.stop = self._stopper()
        self.state = RunState.RUNNING
        self.store.set_sweep_state(self.sweep_id, RunState.RUNNING)
        final = RunState.FAILED
        try:
            tuner.fit()
            # Tune answers Ctrl-C by winding down and returning: a sweep is finished only when every trial ended
            ended = [r for r in self.store.trial_runs(self.sweep_id) if r["state"] not in LIVE]
            complete = len(ended) >= spec.trial_count() and all(t.state not in PENDING_OR_RUNNING
                                                                 for t in self.trials.values())
            final = RunState.FINISHED if complete and not self._stop_all else RunState.STOPPED
        except KeyboardInterrupt:
            final = RunState.STOPPED
            raise
        finally:
            self.state = final
            for trial in self.trials.values():  # trials Tune never ended (Ctrl-C, a driver error): say so
                if trial.state in PENDING_OR_RUNNING:
                    self._end_trial(trial, RunState.STOPPED, "the sweep stopped")
            best = self.best()
            self.store.set_sweep_state(self.sweep_id, final, best.run if best else None,
                                       best.best_psnr if best else None)
            self._emit({"event": "sweep_end", "state": final, "best": best.to_dict() if best else None})
        return {"sweep": self.sweep_id, "state": final, "best": best.to_dict() if best else None,
                "trials": [t.to_dict() for t in self.trials.values()]}

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
        self._emit({"event": "trial_start", "trial": trial.trial_id, "run": run_id, "params": params})

    def _result(self, trial, result: dict) -> None:
        from engine.events import ControlEvent, EvalEvent, StateEvent, StepEvent


        view = self.trials.get(trial.trial_id)
        if view is None:
            return
        rec, run = self.recorders[trial.trial_id], view.run
        view.lr = result.get("lr", view.lr)
        total = int(result.get("total_steps") or 0)
        for s, e, loss, lr, ips, t in result.get("steps") or []:
            loss = float("nan") if loss is None else loss
            self._record(trial.trial_id, StepEvent(run, s, e, loss, lr, ips, total, time=t))
        for d in result.get("events") or []:
            if d.get("event") == "control":
                self._record(trial.trial_id, ControlEvent(run, d["action"], d.get("detail", ""), d.get("step", 0),
                                                          d.get("value"), time=d.get("time", time.time())))
            elif d.get("event") == "state" and d.get("state") in LIVE:
                self._record(trial.trial_id, StateEvent(run, d["state"], d.get("message", ""), d.get("step", 0),
                                                        d.get("epoch", 0)))
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
        if view is None or view.state not in PENDING_OR_RUNNING:
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
            self._end_trial(view, RunState.STOPPED, f"early-stopped by ASHA at step {view.step} of {view.total_steps}")
        else:
            self._end_trial(view, RunState.FINISHED, "")

    def _end_trial(self, view: TrialView, state: str, message: str) -> None:
        from engine.events import StateEvent

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


class TrialRun:
    """One trial of a running sweep as a ``RunHandle``, for the ordinary dashboard: its events come from the driver;
    it can be stopped (by the sweep's stopper, at its next evaluation) and its best weights exported, but not paused
    or re-tuned: the sweep owns its settings. It lives on when its dashboard closes."""

    lives_on = True

    def __init__(self, driver: SweepDriver, trial_id: str):
        self.driver, self.trial_id = driver, trial_id
        view = driver.trials[trial_id]
        self.run_id = view.run
        row = driver.store.get_run(view.run, metrics=False, events=False)
        self.config = RunConfig.from_dict(row["config"])
        self.device, self.epoch, self.best_step, self.message = row["config"].get("device") or "", row["epoch"], \
            row["best_step"], ""
        self.pid = os.getpid()
        self.where = f"trial {trial_id} of {driver.sweep_id}"
        self.run_dir = driver.store.run_dir(view.run)
        self._sinks: list = []

    def _view(self) -> TrialView:
        return self.driver.trials[self.trial_id]

    state = property(lambda self: self._view().state)
    step = property(lambda self: self._view().step)
    total_steps = property(lambda self: self._view().total_steps)
    best_psnr = property(lambda self: self._view().best_psnr)
    lr = property(lambda self: self._view().lr)

    def add_sink(self, sink) -> None:
        self._sinks.append(sink)
        self.driver.trial_sinks.setdefault(self.trial_id, []).append(sink)

    @property
    def alive(self) -> bool:
        return self.state in PENDING_OR_RUNNING

    def start(self) -> None:
        pass  # the sweep runs it already

    def hyperparameters(self) -> dict:
        return {}  # the sweep's settings, none live

    def _refuse(self, *args) -> None:
        raise ValueError("a sweep trial runs with the sweep's settings: it can be stopped (x), not paused or re-tuned")

    pause = resume = set_hyperparameter = _refuse

    def stop(self, reason: str = "") -> None:
        self.driver.stop_trial(self.trial_id)

    def export(self, path=None, force: bool = False) -> dict:
        from .export import export_run

        return export_run(self.driver.store, self.run_id, path, force=force)

    def latest_patches(self):
        e = self._view().last_eval
        return (e.noisy, e.denoised, e.clean) if e is not None and e.noisy is not None else None

    def close(self) -> None:
        sinks = self.driver.trial_sinks.get(self.trial_id, [])
        for sink in self._sinks:
            if sink in sinks:
                sinks.remove(sink)
        self._sinks = []
