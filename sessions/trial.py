"""The code that runs inside a Ray worker: one sweep trial (``trial_main``, the Tune trainable) is an ordinary
``Trainer``, and every evaluation is reported to Tune with its checkpoint, for the driver (``sessions.sweep``) to
record. Trials on other machines never touch the SQLite store."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from engine import patches
from engine.errors import described, first_line
from engine.states import RunState

from .sweep_spec import SweepSpec


def trial_main(config: dict) -> None:
    """The Tune trainable: one ordinary Trainer, every evaluation reported (with its checkpoint) to the driver; its
    steps and events, and the commands of whoever steers it, go through the sweep's mailbox (``sessions.mailbox``)."""
    from ray import tune

    from engine.headless import auto_recover
    from engine.train_state import BEST_FILE, BEST_META, STATE_FILE
    from engine.trainer import Trainer

    from .mailbox import find_mailbox

    spec = SweepSpec.from_dict(config["__spec__"])
    params = {k: v for k, v in config.items() if not k.startswith("__")}
    cfg = spec.trial_config(params)
    trial_id = tune.get_context().get_trial_id()
    _sweep_leftovers()
    run_dir = Path(tempfile.mkdtemp(prefix=f"n2n-trial-{os.getpid()}-"))
    resume_from, taken_from = None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a resumed sweep, a trial PBT paused, or one that took another trial's weights
        with checkpoint.as_directory() as d:
            for name in (BEST_FILE, BEST_META, STATE_FILE, ORIGIN_FILE):
                if (Path(d) / name).is_file():
                    shutil.copy(Path(d) / name, run_dir / name)
        resume_from = run_dir
        taken_from = _origin(run_dir).get("trial")
    trainer = Trainer(cfg, run_dir=run_dir, resume_from=resume_from)
    if resume_from is not None:  # the sweep's values over the restored ones: PBT's explore, or a change by hand
        note = "PBT explore" if taken_from not in (None, trial_id) else "the sweep's setting"
        live = trainer.hyperparameters()
        for name, value in params.items():
            if name in live and live[name].get("value") != value:
                trainer.set_hyperparameter(name, value, note=note)
    pending = {"steps": [], "events": []}
    lock = threading.Lock()
    mailbox = find_mailbox(config.get("__sweep__"))
    courier = _Courier(trainer, mailbox, trial_id, pending, lock) if mailbox is not None else None

    def sink(ev) -> None:
        with lock:
            if ev.kind == "step":
                pending["steps"].append([ev.step, ev.epoch, ev.loss if math.isfinite(ev.loss) else None, ev.lr,
                                         ev.img_per_s, ev.time])
            elif ev.kind in ("control", "state"):
                pending["events"].append(_event_record(ev))
        if ev.kind == "eval":
            if courier is not None:
                courier.exchange_quietly()  # what came before the evaluation reaches the driver before it
            _report(trainer, trial_id, ev, pending, lock, run_dir)

    trainer.add_sink(sink)
    trainer.add_sink(auto_recover(trainer, 3))  # nobody at the keyboard: a blown-up loss halves the rate
    try:
        if courier is not None:
            courier.start()
        final = trainer.run()
        if courier is not None:
            courier.close()
        with lock:
            leftover = pending["steps"] or pending["events"]
        if leftover or final != RunState.FINISHED or courier is not None:
            tune.report({**_status(trainer), "final": final, **_take(pending, lock)})
    finally:
        # what the trial wrote went to Tune as checkpoints; the worker (reused for the next trial) keeps nothing. First:
        # when Tune stops the trial (ASHA, PBT, the sweep's end) it gives this thread 2 s before it ends the worker
        shutil.rmtree(run_dir, ignore_errors=True)
        if courier is not None:
            courier.close(timeout=1.0)


def _sweep_leftovers() -> None:
    """Remove the working folders of trials whose worker was ended before it could (a worker Ray killed)."""
    for d in Path(tempfile.gettempdir()).glob("n2n-trial-*-*"):
        pid = d.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists() and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


ORIGIN_FILE = "origin.json"   # in each checkpoint: the trial whose training it is (PBT hands it to others)


def _origin(run_dir: Path) -> dict:
    try:
        d = json.loads((run_dir / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


class _Courier:
    """The trial's side of the mailbox: a thread that, a few times a second, sends what the trainer did (steps,
    events, its status) and the answers to the commands it applied, and applies the commands waiting for it, as a
    runner applies a viewer's (between steps, by the trainer itself)."""

    def __init__(self, trainer, mailbox, trial_id: str, pending: dict, lock: threading.Lock):
        from .runner import RunControl

        self.trainer, self.mailbox, self.trial_id = trainer, mailbox, trial_id
        self.pending, self.lock = pending, lock
        self.control = RunControl(trainer, None)
        self._answers: list = []
        self._call = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"courier-{trial_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        from .mailbox import POLL_SECONDS

        while not self._done.wait(POLL_SECONDS):
            self.exchange_quietly()

    def exchange_quietly(self, timeout: float = 30.0) -> None:
        """``exchange``; when the mailbox cannot be reached (the driver is going), what was not delivered stays
        pending and goes with the trial's next result to Tune instead."""
        try:
            self.exchange(timeout)
        except Exception:
            pass

    def exchange(self, timeout: float = 30.0) -> None:
        import ray

        with self._call:
            batch = _take(self.pending, self.lock)
            events = [batch] if batch["steps"] or batch["events"] else []
            answers, self._answers = self._answers, []
            try:
                commands = ray.get(self.mailbox.exchange.remote(self.trial_id, events, answers, self.status()),
                                   timeout=timeout)
            except BaseException:
                with self.lock:  # undelivered: back in front of what came since
                    self.pending["steps"][:0] = batch["steps"]
                    self.pending["events"][:0] = batch["events"]
                self._answers[:0] = answers
                raise
            for cmd_id, msg in commands:
                self._answers.append((cmd_id, self._apply(msg)))

    def _apply(self, msg: dict) -> dict:
        try:
            return {"ok": True, "result": self.control.command(msg)}
        except ValueError as e:
            return {"ok": False, "error": first_line(e)}
        except Exception as e:
            return {"ok": False, "error": described(e)}

    def status(self) -> dict:
        t = self.trainer
        return {"state": t.state, "message": t.message, "step": t.step, "epoch": t.epoch,
                "total_steps": t.total_steps, "lr": t.lr, "img_per_s": t.img_per_s, "batch_size": t.batch_size,
                "psnr_noisy": t.psnr_noisy, "hyperparameters": t.hyperparameters(), "device": t.device,
                "threads": t.threads.setting if isinstance(t.threads.setting, int) else None,
                "busy_elsewhere": t.threads.busy}

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread, then one last exchange: the trial's last events and answers reach the driver."""
        if self._done.is_set():
            return
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.exchange_quietly(timeout)


def _event_record(ev) -> dict:
    from engine.headless import event_dict

    return event_dict(ev)


def _take(pending: dict, lock) -> dict:
    with lock:
        out = {"steps": pending["steps"], "events": pending["events"]}
        pending["steps"], pending["events"] = [], []
    return out


def _status(trainer) -> dict:
    t = trainer
    return {"step": t.step, "epoch": t.epoch, "total_steps": t.total_steps,
            "progress": round(1000 * t.step / t.total_steps) if t.total_steps else 0,
            "best_psnr": t.best_psnr if t.best_psnr is not None else float("-inf"), "best_step": t.best_step,
            "psnr": t.last_psnr if t.last_psnr is not None else float("-inf"),  # the metric Tune expects each time
            "lr": t.lr, "img_per_s": t.img_per_s, "device": t.device, "host": socket.gethostname(),
            "node": _node_id(),
            "state": t.state}


def _report(trainer, trial_id: str, ev, pending, lock, run_dir: Path) -> None:
    """One evaluation to Tune: the PSNR, what happened since the last report, and a checkpoint (best weights,
    the latest full state) that the driver copies into the run's folder."""
    from ray import tune

    from engine.train_state import BEST_FILE, BEST_META, STATE_FILE

    metrics = {**_status(trainer), "psnr": ev.psnr, **_take(pending, lock),
               "eval": {"step": ev.step, "epoch": ev.epoch, "psnr": ev.psnr, "psnr_noisy": ev.psnr_noisy,
                        "samples": {k: patches.to_json(getattr(ev, k)) for k in ("noisy", "denoised", "clean")}}}
    trainer.save_state()  # the state as of this evaluation: what a resume, or PBT handing it on, continues
    out = Path(tempfile.mkdtemp(prefix="n2n-ckpt-"))
    for name in (BEST_FILE, BEST_META, STATE_FILE):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out / name)
    (out / ORIGIN_FILE).write_text(json.dumps({"trial": trial_id, "step": trainer.step, "psnr": ev.psnr}))
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(out)))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return ""
