"""The code that runs inside a Ray worker: one sweep trial (``trial_main``, the Tune trainable) is an ordinary
``Trainer``, and every evaluation is reported to Tune with its checkpoint, for the driver (``sessions.sweep``) to
record. Trials on other machines never touch the SQLite store."""
from __future__ import annotations

import math
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from engine import patches
from engine.states import RunState

from .sweep_spec import SweepSpec


def trial_main(config: dict) -> None:
    """The Tune trainable: one ordinary Trainer, every evaluation reported (with its checkpoint) to the driver."""
    from ray import tune

    from engine.headless import auto_recover
    from engine.train_state import BEST_FILE, BEST_META, STATE_FILE
    from engine.trainer import Trainer

    spec = SweepSpec.from_dict(config["__spec__"])
    params = {k: v for k, v in config.items() if not k.startswith("__")}
    cfg = spec.trial_config(params)
    run_dir = Path(tempfile.mkdtemp(prefix="n2n-trial-"))
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a resumed sweep: continue from the last state this trial reported
        with checkpoint.as_directory() as d:
            for name in (BEST_FILE, BEST_META, STATE_FILE):
                if (Path(d) / name).is_file():
                    shutil.copy(Path(d) / name, run_dir / name)
        resume_from = run_dir
    trainer = Trainer(cfg, run_dir=run_dir, resume_from=resume_from)
    pending = {"steps": [], "events": []}
    lock = threading.Lock()

    def sink(ev) -> None:
        with lock:
            if ev.kind == "step":
                pending["steps"].append([ev.step, ev.epoch, ev.loss if math.isfinite(ev.loss) else None, ev.lr,
                                         ev.img_per_s, ev.time])
            elif ev.kind in ("control", "state"):
                pending["events"].append(_event_record(ev))
        if ev.kind == "eval":
            _report(trainer, ev, pending, lock, run_dir)

    trainer.add_sink(sink)
    trainer.add_sink(auto_recover(trainer, 3))  # nobody at the keyboard: a blown-up loss halves the rate
    try:
        final = trainer.run()
        with lock:
            leftover = pending["steps"] or pending["events"]
        if leftover or final != RunState.FINISHED:
            tune.report({**_status(trainer), "final": final, **_take(pending, lock)})
    finally:
        # what the trial wrote went to Tune as checkpoints; the worker (reused for the next trial) keeps nothing
        shutil.rmtree(run_dir, ignore_errors=True)


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


def _report(trainer, ev, pending, lock, run_dir: Path) -> None:
    """One evaluation to Tune: the PSNR, what happened since the last report, and a checkpoint (best weights,
    the latest full state) that the driver copies into the run's folder."""
    from ray import tune

    from engine.train_state import BEST_FILE, BEST_META, STATE_FILE

    metrics = {**_status(trainer), "psnr": ev.psnr, **_take(pending, lock),
               "eval": {"step": ev.step, "epoch": ev.epoch, "psnr": ev.psnr, "psnr_noisy": ev.psnr_noisy,
                        "samples": {k: patches.to_json(getattr(ev, k)) for k in ("noisy", "denoised", "clean")}}}
    out = Path(tempfile.mkdtemp(prefix="n2n-ckpt-"))
    for name in (BEST_FILE, BEST_META, STATE_FILE):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out / name)
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
