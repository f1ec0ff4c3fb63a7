"""The files a run keeps in its folder, and the training state in them (``TrainState``, a part of ``Trainer``):

- ``best.pth``  -- the best-validation weights, in the Model's own grader format (``Model.save``)
- ``best.json`` -- ``{"psnr", "step", "sha256"}`` of ``best.pth``
- ``state.pth`` -- the full training state (model + optimizer, step, RNG, and the last weights judged good), at
  every epoch end, on pause and on stop, and at least every ``STATE_SECONDS`` while training, so a killed run loses
  minutes, not an epoch

All written atomically (temporary file + ``os.replace``), the owner's only (``engine.fileio.run_modes``: 0600 in a
0700 folder, unless the runs folder is shared with a group on purpose), and read back without following symbolic
links. A state is read with ``weights_only=True``: tensors and plain values, nothing executable.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import time
from pathlib import Path

import torch

from .cadence import parse_eval_every
from .errors import N2NError, described
from .events import SavedEvent
from .fileio import atomic_torch_save, atomic_write_bytes, read_nofollow, torch_load_problem, write_error
from .threads import ThreadGovernor, parse_threads

STATE_FORMAT = "n2n-tui/train-state"
STATE_VERSION = 1
BEST_FILE, BEST_META, STATE_FILE = "best.pth", "best.json", "state.pth"


class CheckpointError(N2NError, ValueError):
    """A training-state file that cannot be used (corrupt, foreign, or from another engine)."""


def _clone(obj):
    """Deep copy of a (nested) state dict: tensors cloned, so later in-place updates cannot reach the copy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def read_best_meta(run_dir: str | os.PathLike) -> dict | None:
    """``best.json`` of a run folder, or None if missing or unreadable."""
    try:
        meta = json.loads(read_nofollow(Path(run_dir) / BEST_META))
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


class TrainState:
    """Writing and reading a run's files (a part of ``Trainer``: it uses the trainer's model, run folder and
    counters)."""

    def _write_best(self, p: float) -> None:
        path = self.run_dir / BEST_FILE
        try:
            self.model.save(path)  # the Model's own (grader) format, written atomically by the Model
            os.chmod(path, self.file_mode)  # the Model makes an ordinary readable file; this one is the run's own
        except OSError as e:
            raise write_error(e, path) from None
        blob = read_nofollow(path)
        meta = {"psnr": p, "step": self.step, "sha256": hashlib.sha256(blob).hexdigest(), "run": self.run_id,
                "engine": self.config.engine}
        atomic_write_bytes(self.run_dir / BEST_META, json.dumps(meta).encode(), self.file_mode)
        with self._cv:
            self._best_blob, self.best_psnr, self.best_step = blob, p, self.step

    def _snapshot(self) -> dict:
        """The model's full state in memory (rollback target)."""
        return _clone(self.model.state_dict(with_optimizer=True))

    def _restore(self, snap: dict) -> None:
        self.model.load_state_dict(_clone(snap))  # a fresh copy: the optimizer may keep references

    def save_state(self) -> None:
        """Write the full state now (between two steps, or from an evaluation's sink: a sweep's checkpoint)."""
        self._save_state()

    def _save_state(self) -> None:
        """Full training state: model + optimizer, step, RNG, best, guard history, and the last good weights (the
        rollback target after a resume: the live weights may not have been judged yet)."""
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "run": self.run_id, "engine": self.config.engine,
            "config": self.config.to_dict(), "model": self.model.state_dict(with_optimizer=True),
            "step": self.step, "epoch": self.epoch, "lr": self.lr,
            "best_psnr": self.best_psnr, "best_step": self.best_step, "recent_losses": list(self._recent),
            "epoch_index": self._epoch_index, "pos": self._pos, "lr_scale": self.lr_scale,
            "hyper": self.model.hyperparameters(),
            "threads": self.threads.setting, "eval_every": self.evals.setting,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else [],
            "rng_python": random.getstate(), "time": time.time(),
        }
        if self._good is not None:
            state["good"] = {"step": self._good[0], "model": self._good[1]}
        path = self.run_dir / STATE_FILE
        atomic_torch_save(state, path, self.file_mode)
        self._state_time = time.monotonic()
        self._emit(SavedEvent(self.run_id, path=str(path), psnr=self.best_psnr, step=self.step, what="state"))

    def _load_resume(self, path: Path) -> None:
        run_dir = path if path.is_dir() else path.parent
        state_path = path / STATE_FILE if path.is_dir() else path
        self._resumed = True
        if not state_path.exists():
            if not path.is_dir():
                raise FileNotFoundError(f"{state_path}: no such training state")
            self._resumed = False
            kept = self._load_best(run_dir)
            self.resume_note = (f"no full training state in {run_dir} yet: starting over from step 0"
                                + (f"; the best weights so far ({kept}) stay the bar to beat" if kept else ""))
            return
        try:
            state = torch.load(io.BytesIO(read_nofollow(state_path)), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{state_path}: not a readable training state ({torch_load_problem(e)})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{state_path}: not an n2n-tui training state")
        if state.get("engine") != self.config.engine:
            raise CheckpointError(f"{state_path}: a state of engine {state.get('engine')}, "
                                  f"but the run uses engine {self.config.engine}")
        try:
            self.model.load_state_dict(state["model"])
            self.step, self.epoch = int(state["step"]), int(state["epoch"])
            for name, value in (state.get("hyper") or {}).items():  # the live values, not the launch values
                self.model.set_hyperparameter(name, value)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{state_path}: does not fit the model ({described(e)[:160]})") from None
        self.lr = float(self.model.learning_rate)
        self.batch_size = int(self.model.batch_size)
        self.lr_scale = float(state.get("lr_scale", 1.0))
        try:  # the live thread setting, as the other live values
            self.threads = ThreadGovernor(parse_threads(state.get("threads", self.threads.setting)))
        except ValueError:
            pass
        try:
            self.evals.setting = parse_eval_every(state.get("eval_every", self.evals.setting))
        except ValueError:
            pass
        self._resume_position = (state.get("epoch_index"), state.get("pos"))
        self.best_psnr, self.best_step = state.get("best_psnr"), state.get("best_step")
        self._recent.extend(state.get("recent_losses") or [])
        self._rng_state = {k: state.get(k) for k in ("rng_torch", "rng_cuda", "rng_python")}
        good = state.get("good")
        if isinstance(good, dict) and isinstance(good.get("model"), dict):
            self._good = (int(good.get("step", self.step)), good["model"])
        if not self._load_best(run_dir):
            self.best_psnr = self.best_step = None
        self.resume_note = f"resumed from step {self.step} (epoch {self.epoch})"

    def _load_best(self, run_dir: Path) -> str:
        """Take the run's ``best.pth`` (when ``best.json`` vouches for it) as the best so far; returns a description,
        or "" when there is none."""
        best = run_dir / BEST_FILE
        meta = read_best_meta(run_dir)
        try:
            blob = read_nofollow(best)
        except OSError:
            return ""
        if not blob or not meta or meta.get("sha256") != hashlib.sha256(blob).hexdigest():
            return ""
        psnr_, step = meta.get("psnr"), meta.get("step")
        if not isinstance(psnr_, (int, float)) or not math.isfinite(psnr_):
            return ""
        self._best_blob, self.best_psnr, self.best_step = blob, float(psnr_), step
        return f"{psnr_:.2f} dB at step {step}"
