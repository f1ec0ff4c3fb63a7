"""Opening runs: the one place for every way a run is started or joined.

- ``open_run``: record a run in the store (or take over a stopped one to resume it) and build its ``Trainer`` with
  the store's recorder attached (the runner process, headless ``train``, the in-process dashboard, the sweep driver);
- ``start_run``: a run handle to watch (``sessions.handle.RunHandle``): a new runner process connected to, or a
  ``LocalRun`` in this process;
- ``spawn``: a runner process (``python -m sessions.runner``) started in the background;
- ``attach_run`` / ``live_run``: a live run's handle, and which run a reference means.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import RunConfig
from engine.errors import N2NError, first_line
from engine.specs import check_source
from engine.states import CLEAN_END, ENDED, LIVE, RunState
from engine.system import SystemMonitor
from engine.threads import ThreadGovernor, parse_threads

from .handle import LocalRun
from .recorder import Recorder
from .remote import ControlError, RemoteRun, live_elsewhere
from .store import Store, StoreError

START_TIMEOUT = 120.0  # seconds a new runner may take to record its run and say so

if TYPE_CHECKING:  # the trainer, the data and torch load only where a run trains: attaching stays fast
    from engine.trainer import Trainer


def _load_or_check(config: RunConfig, load: bool):
    """The run's data set now (``load``), or only a check that its files exist (the trainer loads it later)."""
    if load:
        from engine.data import load_data

        return load_data(config.data, noise=config.noise, seed=config.seed, n_train=config.subset, n_val=config.n_val,
                         crop=config.crop)
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
    from engine.trainer import Trainer

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
    from engine.trainer import Trainer

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


def start_run(runs_dir: str | os.PathLike, config: RunConfig | None = None, *, resume: str | None = None,
              device: str | None = None, threads: str | None = None, in_process: bool = False):
    """A run to watch, as ``(handle, store)``: started in a runner process and connected to (it outlives the
    viewer), or built in this process with ``in_process`` (it ends with the process). RunEnded when the runner ended
    before it could be reached."""
    if in_process:
        trainer, store = open_run(runs_dir, config, resume=resume, device=device, threads=threads, load=False)
        return LocalRun(trainer, store), store
    if config is not None:
        check_source(config.data)
    started = spawn(runs_dir, config, resume=resume, device=device, threads=threads)
    try:
        return attach_run(runs_dir, started["run"])
    except ControlError:
        # a runner can end before its viewer connects (its data would not load, and the machine is busy): say how
        # the run ended, as the dashboard would have
        with Store(runs_dir, create=False, readonly=True) as store:
            run = store.get_run(started["run"], metrics=False, events=False)
        if run["state"] not in ENDED:
            raise
        raise RunEnded(run) from None


class RunEnded(N2NError, ValueError):
    """The run ended before a viewer could attach to it; ``status`` is the exit status that says how (1: failed)."""

    def __init__(self, run: dict):
        how = run["state"] + (f": {run['message']}" if run.get("message") else "")
        super().__init__(f"run {run['id']} {how}")
        self.status = 0 if run["state"] in CLEAN_END else 1


def attach_run(runs_dir: str | os.PathLike, run_id: str):
    """``(RemoteRun, Store)`` of a live run: its runner's control socket, and the store to backfill from."""
    store = Store(runs_dir)
    try:
        return RemoteRun(store.run_dir(run_id)), store
    except BaseException:
        store.close()
        raise


def live_run(runs_dir: str | os.PathLike, ref: str | None) -> dict:
    """The run ``ref`` (default: the newest live one), which must be live. A runner the store has lost (its -wal
    file deleted under it) is still found through its socket."""
    try:
        return _live_run(runs_dir, ref)
    except StoreError:
        lost = [r for r in live_elsewhere(runs_dir) if ref in (None, "last") or r["id"].startswith(ref)]
        if len(lost) == 1 or (lost and ref in (None, "last")):
            return lost[0]
        raise


def _live_run(runs_dir, ref: str | None) -> dict:
    with Store(runs_dir, create=False, readonly=True) as store:
        if ref is None:
            live = [r for r in store.list_runs() if r["state"] in LIVE]
            if not live:
                raise StoreError(f"no live run in {store.root}: start one with n2n-tui train, or see n2n-tui runs")
            return max(live, key=lambda r: (r["started"], r["id"]))
        run = store.get_run(ref, metrics=False, events=False)
    if run["state"] not in LIVE:
        raise StoreError(f"run {run['id']} is {run['state']}, not live (see n2n-tui show {run['id']})")
    return run


def spawn(runs_dir: str | os.PathLike, config: RunConfig | None = None, *, resume: str | None = None,
          device: str | None = None, threads: str | None = None) -> dict:
    """Start a runner in the background and wait until it has recorded its run: ``{"run", "pid"}``. Raises
    StoreError with the runner's own one-line reason when it could not start (bad config, missing data ...)."""
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "sessions.runner", "--runs-dir", str(Path(runs_dir).resolve()),
           "--status-fd", str(write_fd)]
    if config is not None:
        cmd += ["--config", json.dumps(config.to_dict())]
    if resume is not None:
        cmd += ["--resume", resume]
    if device:
        cmd += ["--device", device]
    if threads is not None and resume is not None:  # a new run's setting travels in its config
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(write_fd,), start_new_session=True, close_fds=True)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        raw = _read_with_timeout(f, START_TIMEOUT)
    try:
        msg = json.loads(raw) if raw else None
    except ValueError:
        msg = None
    if not msg or not msg.get("ok"):
        if msg is None:  # it died before it could say why: its stderr says
            proc.wait(START_TIMEOUT)
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise StoreError(f"the runner did not start: {err[-1] if err else f'exit status {proc.returncode}'}")
        proc.wait(START_TIMEOUT)
        raise StoreError(msg.get("error") or "the runner did not start")
    proc.stderr.close()
    # reap it when it ends (a long-lived viewer would otherwise keep a zombie); it is in its own session already
    threading.Thread(target=proc.wait, name=f"reap-{msg['pid']}", daemon=True).start()
    return {"run": msg["run"], "pid": msg["pid"]}


def _read_with_timeout(f, timeout: float) -> bytes:
    import select

    ready, _, _ = select.select([f], [], [], timeout)
    return f.readline() if ready else b""
