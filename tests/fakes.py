"""Stand-ins for the trainer and the sessions store, for fast and deterministic dashboard tests (no torch work); a
helper module, not a test file (the waiting helpers are in ``waiting.py``).

``FakeTrainer`` is a whole ``RunHandle`` (pause, resume, stop, set_hyperparameter, add_sink, run...) and emits the real
event classes from ``engine.events``; ``FakeStore`` records what ``sessions.Store`` would; ``scripted_events`` and
``stored_run`` are fixed histories; ``train_args`` is the launcher's default arguments with some replaced.
"""
from __future__ import annotations

import math
import os
import threading
import time
from types import SimpleNamespace

import torch

from engine.config import RunConfig
from engine.events import ControlEvent, EvalEvent, StateEvent, StepEvent

T0 = 1_700_000_000.0  # fixed event times: nothing on screen depends on the clock


def patches(k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic colourful 32x32 patches: clean gradients, noisy = clean + noise, denoised in between."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    clean = torch.stack([torch.stack([x * 8, y * 8, (x + y) * 4 + 40 * i]) for i in range(k)]).clamp(0, 255)
    noise = torch.randn(clean.shape, generator=g) * 60
    noisy = (clean + noise).clamp(0, 255)
    denoised = (clean + noise * 0.2).clamp(0, 255)
    return noisy.to(torch.uint8), denoised.to(torch.uint8), clean.to(torch.uint8)


def scripted_events(run: str = "fake0001", steps: int = 120, total: int = 200, every: int = 40) -> list:
    """A fixed history: running, `steps` loss points, an eval every `every` steps."""
    ev = [StateEvent(run, "running", time=T0)]
    best = -1.0
    for s in range(1, steps + 1):
        loss = 0.08 * math.exp(-s / 60) + 0.02 + 0.004 * math.sin(s * 1.7)
        ev.append(StepEvent(run, s, 1 + (s - 1) // 100, loss, 1e-3, 800.0, total, time=T0 + s * 0.04))
        if s % every == 0:
            psnr = 18 + 5 * (1 - math.exp(-s / 50))
            best = max(best, psnr)
            ev.append(EvalEvent(run, s, 1 + (s - 1) // 100, psnr, best, *patches(), time=T0 + s * 0.04))
    return ev


class FakeStore:
    def __init__(self, runs: list[dict] | None = None) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.runs = runs or []
        self.root = "fake-runs"

    def recorder(self, run_id):
        def sink(e):
            if e.kind in ("control", "state"):
                self.events.append((run_id, e.kind, getattr(e, "action", None) or getattr(e, "state", "")))
        return sink

    def add_event(self, run_id, kind, detail="", step=None):
        self.events.append((run_id, kind, detail))

    def list_runs(self):
        return [{k: r[k] for k in r if k not in ("metrics", "events")} for r in self.runs]

    def get_run(self, ref):
        for r in self.runs:
            if r["id"].startswith(ref):
                return r
        raise KeyError(ref)


def stored_run(rid: str, engine: int, steps: int, scale: float = 1.0) -> dict:
    metrics = []
    for s in range(1, steps + 1):
        metrics.append({"step": s, "epoch": 1, "loss": scale * (0.08 * math.exp(-s / 60) + 0.02), "lr": 1e-3,
                        "psnr": None})
        if s % 25 == 0:
            metrics.append({"step": s, "epoch": 1, "loss": None, "lr": 1e-3,
                            "psnr": 18 + 5 * (1 - math.exp(-s / (50 * scale)))})
    best = max(m["psnr"] for m in metrics if m["psnr"] is not None)
    return {"id": rid, "engine": engine, "state": "finished", "step": steps, "epoch": 1, "lr": 1e-3,
            "best_psnr": best, "best_step": steps, "started": "2024-05-01T10:00:00", "ended": "2024-05-01T10:05:00",
            "config": RunConfig(engine=engine).to_dict(), "metrics": metrics,
            "events": [{"time": "2024-05-01T10:00:00", "kind": "state", "detail": "running"}]}


class FakeTrainer:
    """Steps every `delay` seconds until `total_steps`; control calls take effect between steps, like the real one."""

    def __init__(self, run_id="fake0001", total_steps=200, delay=0.005, every=50, store=None, engine=1):
        self.config = RunConfig(engine=engine, epochs=2)
        self.run_id, self.run_dir = run_id, None
        self.state, self.step, self.epoch, self.total_steps = "idle", 0, 0, total_steps
        self.best_psnr, self.best_step, self.lr, self.device = None, None, 1e-3, "cpu"
        self.delay, self.every = delay, every
        self.sinks = [store.recorder(run_id)] if store is not None else []
        self._cmd = threading.Condition()
        self._pause = self._stop = False
        self.message, self.pid, self.where, self.lives_on = "", os.getpid(), "in this process", False
        self._thread = None

    def add_sink(self, sink):
        self.sinks.append(sink)

    def start(self):
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    @property
    def alive(self):
        return self._thread is not None and self._thread.is_alive()

    def emit(self, e):
        for s in self.sinks:
            s(e)

    publish = emit  # the Trainer's name for an event from elsewhere in the run's process

    def _state(self, state, message=""):
        self.state = state
        self.emit(StateEvent(self.run_id, state, message, self.step, self.epoch))

    def pause(self):
        with self._cmd:
            self._pause = True
            self._cmd.notify_all()

    def resume(self):
        with self._cmd:
            self._pause = False
            self._cmd.notify_all()

    def stop(self, reason=""):
        with self._cmd:
            self._stop = True
            self._cmd.notify_all()

    def hyperparameters(self):
        return {}

    def set_hyperparameter(self, name, value):
        if name != "lr" or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"lr must be a positive number, got {value!r}")
        old, self.lr = self.lr, float(value)
        self.emit(ControlEvent(self.run_id, "lr", f"{old:g} -> {value:g}", step=self.step))

    def export(self, path=None, force=False):
        raise ValueError("a fake run has no weights to export")

    def latest_patches(self):
        return None

    def close(self):
        pass

    def run(self):
        self._state("running")
        while self.step < self.total_steps:
            with self._cmd:
                if self._pause and not self._stop:
                    self._state("paused")
                    self.emit(ControlEvent(self.run_id, "pause", step=self.step))
                    while self._pause and not self._stop:
                        self._cmd.wait(0.05)
                    if not self._stop:
                        self.emit(ControlEvent(self.run_id, "resume", step=self.step))
                        self._state("running")
                if self._stop:
                    self.emit(ControlEvent(self.run_id, "stop", step=self.step))
                    self._state("stopped")
                    return "stopped"
            time.sleep(self.delay)
            self.step += 1
            self.epoch = 1 + (self.step - 1) * 2 // self.total_steps
            self.emit(StepEvent(self.run_id, self.step, self.epoch, 0.05 + 0.05 / self.step, self.lr, 1000.0,
                                self.total_steps))
            if self.step % self.every == 0:
                psnr = 20 + self.step / 100
                if self.best_psnr is None or psnr > self.best_psnr:
                    self.best_psnr, self.best_step = psnr, self.step
                self.emit(EvalEvent(self.run_id, self.step, self.epoch, psnr, self.best_psnr, *patches()))
        self._state("finished")
        return "finished"


def train_args(**kw) -> SimpleNamespace:
    from tui.screens.launcher import train_defaults

    args = train_defaults(kw.pop("runs_dir", None))
    for k, v in kw.items():
        setattr(args, k, v)
    return args
