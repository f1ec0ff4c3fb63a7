"""Steering a sweep's trials as if they were runs, on this machine or another node: the driver serves each live
trial's control socket in the trial's run folder (``ctl`` and ``attach`` find it as they find a runner's), and
passes what viewers ask to the trial through the sweep's mailbox (``sessions.mailbox``); the trial applies it
between steps and answers the same way, and its events come back through the mailbox into the run's record and to
every viewer. ``TrialRun`` is a trial as a ``RunHandle``, for the sweep view's ordinary dashboard."""
from __future__ import annotations

import os
import threading
import time

from engine.config import RunConfig
from engine.states import ACTIVE, UNDERWAY

from .mailbox import POLL_SECONDS, open_mailbox
from .server import ControlServer

ANSWER_SECONDS = 10.0       # how long a viewer's command waits for the trial's answer


class Steering:
    """The driver's side: the mailbox, a thread that drains the trials' events into their runs, one control socket
    per live trial, and ``command`` (a viewer's command to a trial, answered or refused in one line)."""

    def __init__(self, driver):
        self.driver = driver
        self.mailbox = open_mailbox(driver.sweep_id)
        self.servers: dict[str, ControlServer] = {}
        self._drain_lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"steering-{driver.sweep_id}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------------- events in
    def _loop(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            try:
                self.drain()
            except Exception:  # Ray going down at the sweep's end: the last drain is the driver's
                pass

    def drain(self) -> None:
        """What the trials sent since the last drain, into their runs (in order: a trial's result drains first)."""
        import ray

        with self._drain_lock:
            events, status = ray.get(self.mailbox.drain.remote(), timeout=30)
            for trial, batches in events.items():
                for batch in batches:
                    self.driver._record_batch(trial, batch)
            for trial, st in status.items():
                view = self.driver.trials.get(trial)
                if view is None:
                    continue
                if not view.status and st.get("hyperparameters"):  # its launch values: where its settings
                    values = {k: v.get("value") for k, v in st["hyperparameters"].items()}  # history starts
                    self.driver.store.record_settings(view.run, st.get("step", 0), values)
                view.status = st

    # --------------------------------------------------------------------------------------- viewers
    def open(self, trial: str) -> None:
        """Serve the trial's control socket (a trial PBT restarts keeps its own)."""
        if trial in self.servers:
            return
        view = self.driver.trials[trial]
        server = ControlServer(self.driver.store.run_dir(view.run), TrialControl(self, trial)).start()
        self.servers[trial] = server
        self.driver.trial_sinks.setdefault(trial, []).append(server.publish)

    def close(self, trial: str) -> None:
        server = self.servers.pop(trial, None)
        if server is None:
            return
        sinks = self.driver.trial_sinks.get(trial, [])
        if server.publish in sinks:
            sinks.remove(server.publish)
        server.close()

    def shutdown(self) -> None:
        self._done.set()
        self._thread.join(5)
        try:
            self.drain()
        except Exception:
            pass
        for trial in list(self.servers):
            self.close(trial)
        try:
            import ray

            ray.kill(self.mailbox)
        except Exception:
            pass

    def post(self, trial: str, msg: dict) -> None:
        """A command to the trial that nobody waits for."""
        import ray

        ray.get(self.mailbox.post.remote(trial, msg, False), timeout=30)

    def status(self, trial: str) -> dict:
        d, view = self.driver, self.driver.trials[trial]
        st = view.status or {}
        row = d.store.get_run(view.run, metrics=False, events=False)
        return {"run": view.run, "config": row["config"], "engine": row["engine"],
                "device": st.get("device") or row["config"].get("device") or "",
                "state": view.state, "message": st.get("message", ""), "step": view.step,
                "epoch": st.get("epoch", row["epoch"]), "total_steps": view.total_steps, "lr": view.lr,
                "best_psnr": view.best_psnr, "best_step": view.best_step, "img_per_s": st.get("img_per_s"),
                "psnr_noisy": view.noisy_psnr, "batch_size": st.get("batch_size"),
                "hyperparameters": st.get("hyperparameters") or {}, "threads": st.get("threads"),
                "busy_elsewhere": st.get("busy_elsewhere"), "pid": os.getpid(),
                "run_dir": str(d.store.run_dir(view.run)), "sweep": d.sweep_id, "trial": trial,
                "where": f"trial {trial} of {d.sweep_id}"}

    def command(self, trial: str, msg: dict) -> dict:
        """A viewer's command to the trial: ``status`` and ``save`` here (the best weights are in the run folder),
        the rest applied by the trial between its steps. ValueError (one line) when refused or unanswered."""
        import ray

        view = self.driver.trials.get(trial)
        if view is None:
            raise ValueError(f"no trial {trial} in sweep {self.driver.sweep_id}")
        cmd = msg["cmd"]
        if cmd == "status":
            return self.status(trial)
        if cmd == "save":
            from .export import export_run

            if view.best_psnr is None:
                raise ValueError("nothing to save yet: no evaluation has run")
            return export_run(self.driver.store, view.run, msg.get("path"), force=msg.get("force", False))
        if view.state not in ACTIVE:
            raise ValueError(f"trial {trial} is {view.state}: it takes no more {cmd} commands")
        wire = {k: msg[k] for k in ("cmd", "name", "value", "by") if k in msg}
        cmd_id = ray.get(self.mailbox.post.remote(trial, wire), timeout=30)
        deadline = time.monotonic() + ANSWER_SECONDS
        while True:
            reply = ray.get(self.mailbox.answer.remote(cmd_id), timeout=30)
            if reply is not None:
                break
            if time.monotonic() > deadline or view.state not in UNDERWAY:
                if ray.get(self.mailbox.withdraw.remote(trial, cmd_id), timeout=30):
                    raise ValueError(f"trial {trial} did not answer within {ANSWER_SECONDS:.0f} s; nothing changed")
                deadline = time.monotonic() + ANSWER_SECONDS  # taken just now: its answer is on its way
            time.sleep(POLL_SECONDS / 4)
        if not reply.get("ok"):
            raise ValueError(reply.get("error") or f"{cmd} refused")
        if cmd in ("pause", "resume"):
            view.held = cmd == "pause"
        if cmd == "set":
            self.driver._set_by_hand(trial, msg["name"], msg["value"])
        if cmd == "stop":
            self.driver.stop_trial(trial)
        return reply.get("result") or {}


class TrialControl:
    """A trial's control-socket handler (the ``ControlServer``'s ``status`` and ``command``)."""

    def __init__(self, steering: Steering, trial: str):
        self.steering, self.trial = steering, trial

    def status(self) -> dict:
        return self.steering.status(self.trial)

    def command(self, msg: dict) -> dict:
        return self.steering.command(self.trial, msg)


class TrialRun:
    """One trial of a running sweep as a ``RunHandle``, for the ordinary dashboard: its events come from the driver,
    its commands go to the trial through the driver (as ``ctl`` and ``attach`` send them). It lives on when its
    dashboard closes."""

    lives_on = True

    def __init__(self, driver, trial_id: str):
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

    def _view(self):
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
        return self.state in UNDERWAY

    def start(self) -> None:
        pass  # the sweep runs it already

    def hyperparameters(self) -> dict:
        """The trial's live hyper-parameters as it last said (none before it first did)."""
        return {k: dict(v) for k, v in ((self._view().status or {}).get("hyperparameters") or {}).items()}

    def _command(self, cmd: str, **fields) -> dict:
        steering = self.driver.steering
        if steering is None:
            raise ValueError("this sweep is not running here: its trials take no commands")
        return steering.command(self.trial_id, {"cmd": cmd, **fields})

    def pause(self) -> None:
        self._command("pause")

    def resume(self) -> None:
        self._command("resume")

    def set_hyperparameter(self, name: str, value) -> dict:
        return self._command("set", name=name, value=value)

    def stop(self, reason: str = "") -> None:
        self.driver.stop_trial(self.trial_id)  # at its next evaluation, whatever happens to the command
        if self.driver.steering is not None and self.state in ACTIVE:
            try:
                self._command("stop", by=reason or "stopped from the sweep view")
            except ValueError:
                pass

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
