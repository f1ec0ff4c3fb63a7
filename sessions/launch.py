"""Opening a run for training: record it in the store (or take over a stopped one to resume it) and build its
``Trainer`` with the store's recorder attached. The one place that does this, for every way a run is started: the
runner process, headless ``train``, the in-process dashboard and the sweep driver."""
from __future__ import annotations

import os

from engine.config import RunConfig
from engine.data import check_source, load_data
from engine.system import SystemMonitor
from engine.threads import ThreadGovernor, parse_threads
from engine.trainer import Trainer
from engine.errors import first_line
from engine.states import LIVE, RunState

from .recorder import Recorder
from .store import Store, StoreError


def _load_or_check(config: RunConfig, load: bool):
    """The run's data set now (``load``), or only a check that its files exist (the trainer loads it later)."""
    if load:
        return load_data(config.data, noise=config.noise, seed=config.seed, n_train=config.subset, n_val=config.n_val)
    check_source(config.data)
    return None


def open_run(runs_dir: str | os.PathLike, config: RunConfig | None = None, *, resume: str | None = None,
             device: str | None = None, threads: str | None = None, load: bool = True,
             sinks=()) -> tuple[Trainer, Store]:
    """A recorded, ready-to-run ``(Trainer, Store)``: a new run of ``config``, or run ``resume`` (an id, a unique
    prefix, or ``last``) taken over to continue it, optionally on another ``device`` or with another ``threads``
    setting (else the one it had when it stopped: threads is a live setting).

    With ``load=True`` the data is loaded here (errors surface before anything is recorded); with ``load=False`` the
    trainer loads it in its own thread (a data error then ends the run as ``failed``). The store's recorder is
    attached first, ``sinks`` after it. Raises ConfigError / DataError / StoreError / CheckpointError (all
    ValueError) with one-line messages.
    """
    store = Store(runs_dir)
    try:
        trainer = _open(store, config, resume, device, threads, load, sinks)
    except BaseException:
        store.close()
        raise
    # the live hyper-parameters in force from here (history: ``settings``), and what the machine does meanwhile
    store.record_settings(trainer.run_id, trainer.step, {k: v["value"] for k, v in trainer.hyperparameters().items()})
    SystemMonitor(trainer, store.root).start()
    return trainer, store


def _open(store: Store, config, resume, device, threads, load, sinks) -> Trainer:
    if resume is not None:  # "" is a (bad) reference, not "no resume"
        return _resume(store, resume, device, threads, load, sinks)
    config = config.validate()
    dataset = _load_or_check(config, load)
    run_id = store.new_run(config)
    try:
        trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                          sinks=[Recorder(store, run_id), *sinks])
        if dataset is not None:
            trainer.prepare()  # the run's plan (a warm-up longer than the run...) is checked before it starts
        return trainer
    except Exception as e:
        store.set_state(run_id, RunState.FAILED, first_line(e))
        raise


def _resume(store: Store, ref: str, device: str | None, threads: str | None, load: bool, sinks) -> Trainer:
    run = store.get_run(ref, metrics=False, events=False)
    run_id = run["id"]
    if run["state"] == RunState.FINISHED:
        raise StoreError(f"run {run_id} has finished: nothing to resume")
    if run["state"] in LIVE:
        raise StoreError(f"run {run_id} is {run['state']} in another process (pid {run['pid']}); "
                         f"attach to it with n2n-tui attach {run_id}, or stop it first")
    config = RunConfig.from_dict(run["config"])
    if device:
        config.device = device  # what may change: the machine it continues on, and how many threads it uses there
    setting = parse_threads(threads) if threads is not None else None
    config.validate()
    store.acquire(run_id)  # from here on this process owns the run
    try:
        dataset = _load_or_check(config, load)
        trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                          sinks=[Recorder(store, run_id), *sinks], resume_from=store.run_dir(run_id))
        if setting is not None:
            trainer.threads = ThreadGovernor(setting)
    except BaseException:
        store.release(run_id)
        raise
    store.begin_resume(run_id, trainer.step, trainer.resume_note)
    return trainer


class LocalRun:
    """A Trainer in this process (``train --in-process``) with the face a viewer expects of a run, the same as
    ``RemoteRun``'s: the Trainer's attributes and controls, plus ``export`` through the verified export. The run ends
    with this process."""

    remote = False
    pid = os.getpid()

    def __init__(self, trainer: Trainer, store: Store):
        self.trainer, self.store = trainer, store

    def __getattr__(self, name):
        return getattr(self.trainer, name)

    def export(self, path: str | os.PathLike | None = None, force: bool = False) -> dict:
        from .export import export_run

        return export_run(self.store, self.trainer.run_id, path, dataset=self.trainer.dataset, force=force)

    def latest_patches(self):
        return None  # a run starting here has shown nothing yet; its evaluations arrive as events

    def close(self) -> None:
        pass
