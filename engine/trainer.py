"""The training loop with live control.

``Trainer`` owns one plain loop over ``Model.train_step`` (the model owns *how* to step; the trainer owns *when*):
shuffle with the seed, step, watch the loss, evaluate PSNR every ``eval_every`` steps and at each epoch end, keep the
best-validation weights, checkpoint the full training state. It runs in the calling thread (``run``, headless) or in
a daemon worker (``start``, the dashboard) and reports through plain event objects handed to sinks.

Control calls (``pause``, ``resume``, ``stop``, ``set_lr``, ``set_hyperparameter``, ``save_best``) are thread-safe;
they only set a flag under a lock and the loop acts on it between two steps, so a step is never cut in half. The live
hyper-parameters are the ones the Model declares (``Model.HYPERPARAMETERS``: learning rate, weight decay, batch size,
Adam's betas, gradient clipping) and torch's CPU thread count (``threads``: a count, or 0 for auto, which a
``ThreadGovernor`` adapts between steps to what the machine has free; engine.threads); a learning-rate schedule
(``engine.schedule``) sets the rate before every step, and a learning rate set by hand rescales the rest of the
schedule so that it continues from the new value.

The training pairs can change between epochs, never within one: ``set_train_pairs`` hands the trainer new ones
(same count, shape and dtype) for the next epoch's start, and ``RunConfig.fresh`` has it draw new ones for every
epoch after the first (``engine.fresh``: new noise on the same clean crops, new dead-leaves images), in a background
thread while the previous epoch trains; when they are not ready in time the loop waits, and says so in a ``data``
event. The validation pairs never change.

Its parts: the control plane (``engine.live_control``: what viewers ask, applied between two steps), the files
in the run folder (``engine.train_state``: best weights, the full training state, resuming from it) and the
training pairs of each epoch (``engine.fresh``).

Weights are "judged good" by the explosion guard: the loss a step returns is measured on the weights *before* that
step's update, so a snapshot is taken just before a step and becomes the rollback target only when that step's loss
passes the guard. A step that ruins the weights is therefore never the one whose weights are kept.
"""
from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable

import torch

from .cadence import EvalCadence, parse_eval_every
from .config import ConfigError, RunConfig, new_run_id  # noqa: F401  (new_run_id: re-exported)
from .data import Dataset, load_data, with_float_targets
from .errors import described
from .evaluate import predict_all
from .events import ControlEvent, EvalEvent, Event, SavedEvent, StateEvent, StepEvent
from .fileio import atomic_write_bytes, make_dir, run_modes
from .fresh import PairMaker, TrainPairs
from .live_control import LiveControl
from .metrics import psnr
from .models import new_model
from .schedule import Schedule
from .states import RunState
from .threads import ThreadGovernor, parse_threads
from .train_state import BEST_FILE, TrainState

N_SAMPLES = 6            # fixed validation images shown as noisy / denoised / clean
GUARD_WINDOW = 50        # losses in the explosion guard's running median
GUARD_MIN = 20           # ... needed before the 10x test applies
GUARD_FACTOR = 10.0
SNAPSHOT_SECONDS = 5.0   # at most this long between in-memory "last good weights" snapshots (rollback target)
STATE_SECONDS = 120.0    # at most this long between full training states on disk while training
EVAL_BATCH = 1000        # images per predict() call in evaluations (the Model chunks further by its own memory rule)


class Trainer(LiveControl, TrainState, TrainPairs):
    def __init__(self, config: RunConfig, *, run_id: str | None = None, run_dir: str | os.PathLike | None = None,
                 sinks=(), dataset: Dataset | None = None, resume_from: str | os.PathLike | None = None):
        self.config = config.validate()
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix=f"n2n-{self.run_id}-"))
        folder_mode, self.file_mode = run_modes(self.run_dir.parent)   # what the run's own files get
        if not self.run_dir.exists():
            make_dir(self.run_dir, folder_mode, parents=True)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dataset = dataset

        torch.manual_seed(config.seed)  # reproducible initial weights
        self.model = new_model(config.engine, self.device, **config.model_options())
        if config.batch_size is not None:
            self.model.batch_size = config.batch_size
        if config.lr is not None:
            self.model.learning_rate = config.lr
        self.batch_size = int(self.model.batch_size)
        self.base_lr = float(self.model.learning_rate)   # what the schedule's factors multiply
        self.schedule = Schedule(config.schedule, config.warmup, config.decay_to, config.step_every, config.gamma)
        self.lr_scale = 1.0                               # a learning rate set by hand rescales the schedule
        self.threads = ThreadGovernor(parse_threads(config.threads))
        self.evals = EvalCadence(parse_eval_every(config.eval_every))

        self.state = RunState.IDLE
        self.message = ""
        self.step = 0
        self.epoch = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.best_psnr: float | None = None
        self.best_step: int | None = None
        self.psnr_noisy: float | None = None
        self.last_psnr: float | None = None
        self.lr = float(self.model.learning_rate)
        self.img_per_s = 0.0

        self._sinks: list[Callable[[Event], None]] = list(sinks)
        self._failed_sinks: set[int] = set()
        self._emit_lock = threading.RLock()
        self._cv = threading.Condition()
        self._want_pause = False
        self._want_stop = False
        self._pause_message = ""
        self._stop_message = ""
        self._pending: dict[str, object] = {}     # live hyper-parameter changes, applied between two steps
        self._notes: dict[str, str] = {}         # ... and who made them, when not a person (PBT)
        self._queued: list[Event] = []
        self._started = False
        self._done = False
        self._thread: threading.Thread | None = None

        self._best_blob: bytes | None = None     # best.pth bytes, immutable: save_best reads it from any thread
        self._good = None                         # (step, snapshot) rollback target of the explosion guard
        self._good_time = 0.0
        self._snapshot_due = False                # take a candidate snapshot before the next step
        self._state_time = 0.0                    # when state.pth was last written (monotonic)
        self._recent: deque[float] = deque(maxlen=GUARD_WINDOW)
        self._sec_per_img: float | None = None
        self._resume_position = (None, None)      # (epochs completed, pos) from a full state
        self._epoch_index = 0                     # epochs completed
        self._pos = 0                             # pairs of the current epoch's permutation already trained on
        self._rng_state: dict | None = None       # restored at run start when resuming
        self._resumed = False
        self.resume_note = ""
        self._fresh: PairMaker | None = None     # config.fresh: draws each epoch's pairs (engine.fresh)
        self._next_pairs = None                   # (inputs, targets, clean) from set_train_pairs, for the next epoch
        self.fresh_epochs = 0                     # epochs this run trained on freshly drawn pairs
        if resume_from is not None:
            self._load_resume(Path(resume_from))

    # ------------------------------------------------------------------------------------------------ control API
    def add_sink(self, sink: Callable[[Event], None]) -> None:
        with self._emit_lock:
            self._sinks = self._sinks + [sink]

    def start(self) -> threading.Thread:
        """Run in a daemon worker thread."""
        self._thread = threading.Thread(target=self.run, name=f"trainer-{self.run_id}", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def save_best(self, path: str | os.PathLike) -> tuple[Path, float]:
        """Write the best-validation weights to ``path`` (atomic) as a grader-ready ``bestmodel.pth``."""
        with self._cv:
            blob, best, step = self._best_blob, self.best_psnr, self.best_step
        if blob is None:
            raise ValueError("no validation result yet: nothing to save")
        target = atomic_write_bytes(path, blob)
        self._post([SavedEvent(self.run_id, path=str(target), psnr=best, step=step or 0, what="export"),
                    ControlEvent(self.run_id, action="save", step=self.step,
                                 detail=f"{target}" + (f" ({best:.2f} dB)" if best is not None else ""))])
        return target, best

    @property
    def alive(self) -> bool:
        return self._started and not self._done

    # --------------------------------------------------------------------------------------------------- the run
    def prepare(self) -> None:
        """Load the data (if not given) and size the run; ``run`` calls it, callers may call it early."""
        if self.steps_per_epoch:
            return
        cfg = self.config
        if self.dataset is None:
            self.dataset = load_data(cfg.data, noise=cfg.noise, seed=cfg.seed, n_train=cfg.subset, n_val=cfg.n_val,
                                     crop=cfg.crop)
        ds = self.dataset
        if (cfg.subset is not None and len(ds.train_input) > cfg.subset) or len(ds.val_input) > cfg.n_val:
            ds = ds.head(cfg.subset, cfg.n_val)
        if cfg.float_targets:
            if ds.train_target.dtype == torch.uint8:  # a dataset handed in with float targets keeps them
                ds = with_float_targets(ds, cfg.seed)
            self.model.swap_pairs = False  # an unclipped float target cannot be a test-like input's twin
        self.dataset = ds
        if cfg.fresh:
            self._fresh = PairMaker.of(ds, cfg.seed, cfg.float_targets)
        self._train_x, self._train_y = ds.train_input, ds.train_target
        if self.device.startswith("cuda"):  # keep the (uint8) training set on the GPU: no per-step copies
            self._train_x, self._train_y = self._train_x.to(self.device), self._train_y.to(self.device)
        self.steps_per_epoch = math.ceil(len(ds.train_input) / self.batch_size)
        epoch_index, pos = self._resume_position
        if self._resumed and epoch_index is None:  # a state from before live batch sizes: fixed-size steps
            epoch_index, i = divmod(self.step, self.steps_per_epoch)
            pos = i * self.batch_size
        self._epoch_index, self._pos = int(epoch_index or 0), int(pos or 0)
        self.total_steps = self.step + self._remaining_steps()
        warmup = self.schedule.warmup
        if warmup and warmup >= self.total_steps and not self._resumed:
            self.steps_per_epoch = 0  # not prepared: the run does not start
            raise ConfigError(f"warmup: {warmup} steps, but the whole run is {self.total_steps} steps "
                              f"({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} of "
                              f"{math.ceil(len(ds.train_input) / self.batch_size)}"
                              "): the learning rate would never reach its base; give a shorter --warmup")
        m = len(ds.val_input)
        self._sample_idx = torch.linspace(0, m - 1, min(N_SAMPLES, m)).round().long().unique()
        self._noisy_samples = ds.val_input[self._sample_idx].clone()
        self._clean_samples = ds.val_target[self._sample_idx].clone()
        self.psnr_noisy = psnr(ds.val_input, ds.val_target)

    def run(self) -> str:
        """Train to the end (or until stopped) in the calling thread; returns the final state."""
        with self._cv:
            if self._started:
                raise RuntimeError("a Trainer runs once")
            self._started = True
        final, message, interrupted = RunState.FAILED, "", None
        try:
            self.prepare()
            self._seed()
            threads = self.threads.start()
            self._set_state(RunState.RUNNING, self.resume_note)
            self._emit(ControlEvent(self.run_id, action="threads", detail=threads, step=self.step,
                                    value=float(self.threads.n)))
            if not self._resumed and not self._want_stop:
                self._evaluate()  # step 0: the curve starts at the untrained network
            if self._good is None:  # nothing judged yet: the starting weights are the only fallback
                self._good = (self.step, self._snapshot())
            self._good_time = self._state_time = time.monotonic()
            final = self._train()
            if final == RunState.STOPPED:
                self._save_state()
                message = self._stop_message
                self._emit(ControlEvent(self.run_id, action="stop", detail=message, step=self.step))
        except KeyboardInterrupt as e:  # a second Ctrl-C: leave now, no checkpoint of a half-done step
            final, message, interrupted = RunState.STOPPED, "interrupted", e
        except Exception as e:
            final, message = RunState.FAILED, described(e)
            self._emit(ControlEvent(self.run_id, action="error", detail=traceback.format_exc(limit=8),
                                    step=self.step))
        finally:
            with self._cv:
                self._done = True
                queued, self._queued = self._queued, []
            for ev in queued:
                self._emit(ev)
            self._set_state(final, message)
        if interrupted is not None:
            raise interrupted
        return final

    def _remaining_steps(self) -> int:
        n, bs = len(self.dataset.train_input), self.batch_size
        left_in_epoch = math.ceil((n - self._pos) / bs) if self._pos < n else 0
        return left_in_epoch + (self.config.epochs - self._epoch_index - 1) * math.ceil(n / bs)

    def _train(self) -> str:
        """The loop. Returns "finished" or "stopped"."""
        cfg, model = self.config, self.model
        n = len(self._train_x)
        order, order_epoch = None, -1
        while self._epoch_index < cfg.epochs:
            if not self._between_steps():
                return RunState.STOPPED
            e = self._epoch_index
            if e != order_epoch:  # the same pairs and permutation for an epoch whether or not the run was resumed
                if not self._start_epoch(e):
                    return RunState.STOPPED
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + e)
                order, order_epoch = torch.randperm(n, generator=g).to(self._train_x.device), e
            idx = order[self._pos:self._pos + self.batch_size]
            if self.schedule.varies:
                self._apply_schedule()
            # a candidate rollback target: the weights this step's loss is about to judge
            candidate = None
            if self._snapshot_due or time.monotonic() - self._good_time > SNAPSHOT_SECONDS:
                candidate, self._snapshot_due = (self.step, self._snapshot()), False

            t0 = time.perf_counter()
            loss = model.train_step(self._train_x[idx], self._train_y[idx])
            dt = (time.perf_counter() - t0) / len(idx)
            changed = self.threads.after_step(dt)   # auto: may try or take another thread count for the next step
            self._sec_per_img = dt if self._sec_per_img is None else 0.9 * self._sec_per_img + 0.1 * dt
            self.img_per_s = 1.0 / self._sec_per_img if self._sec_per_img > 0 else 0.0
            self.step, self.epoch, self._pos = self.step + 1, e + 1, self._pos + len(idx)
            epoch_end = self._pos >= n
            if epoch_end:
                self._epoch_index, self._pos = e + 1, 0
            self._emit(StepEvent(self.run_id, step=self.step, epoch=self.epoch, loss=loss, lr=self.lr,
                                 img_per_s=self.img_per_s, total_steps=self.total_steps))
            if changed:
                self._emit(ControlEvent(self.run_id, action="threads", detail=changed, step=self.step,
                                        value=float(self.threads.n)))

            rolled_back = self._guard(loss)  # a NaN/exploding loss: weights rolled back, pause requested
            if candidate is not None and not rolled_back:
                self._good, self._good_time = candidate, time.monotonic()
            if not rolled_back and (epoch_end or self.evals.due(self.step, self.total_steps)):
                self._evaluate()
                self._snapshot_due = True  # the next step judges the weights just evaluated
            if epoch_end or time.monotonic() - self._state_time > STATE_SECONDS:
                self._save_state()
        return RunState.FINISHED

    # ----------------------------------------------------------------------------------------- between two steps
    def _apply_schedule(self) -> None:
        lr = self.base_lr * self.lr_scale * self.schedule.factor(self.step, self.total_steps, self.steps_per_epoch)
        if lr != self.lr:
            self.model.learning_rate = lr
            self.lr = lr

    def _guard(self, loss: float) -> bool:
        """NaN/inf or a loss 10x its recent median: roll back to the last good weights and pause. True if it fired."""
        why = None
        if not math.isfinite(loss):
            why = f"loss is {loss} at step {self.step}"
        elif len(self._recent) >= GUARD_MIN:
            med = statistics.median(self._recent)
            if loss > GUARD_FACTOR * med:
                why = f"loss {loss:.4g} at step {self.step} is over {GUARD_FACTOR:g}x its recent median {med:.4g}"
        if why is None:
            self._recent.append(loss)
            return False
        good_step, snap = self._good
        self._restore(snap)
        self.model.learning_rate = self.lr  # keep the rate the user set; they decide how far to lower it
        message = (f"{why}: rolled back to the weights of step {good_step} at lr {self.lr:.3g}; "
                   f"lower the learning rate and resume")
        with self._cv:  # pause first, then tell: a sink may answer the event with set_lr + resume
            self._want_pause = True
            self._pause_message = message
        self._emit(ControlEvent(self.run_id, action="guard", detail=message, step=self.step))
        return True

    # ----------------------------------------------------------------------------------------- eval, checkpoints
    def _evaluate(self) -> None:
        ds, t0 = self.dataset, time.monotonic()
        denoised = predict_all(self.model, ds.val_input, batch=EVAL_BATCH)
        p = psnr(denoised, ds.val_target)
        self.last_psnr = p
        improved = math.isfinite(p) and (self.best_psnr is None or p > self.best_psnr)
        if improved:
            self._write_best(p)
        samples = denoised[self._sample_idx].round().clamp(0, 255).to(torch.uint8)
        self._emit(EvalEvent(self.run_id, step=self.step, epoch=self.epoch, psnr=p, best_psnr=self.best_psnr,
                             noisy=self._noisy_samples, denoised=samples, clean=self._clean_samples,
                             psnr_noisy=self.psnr_noisy))
        if improved:
            self._emit(SavedEvent(self.run_id, path=str(self.run_dir / BEST_FILE), psnr=p, step=self.step,
                                  what="best"))
        self.evals.evaluated(time.monotonic() - t0)

    def _seed(self) -> None:
        if self._rng_state is None:
            torch.manual_seed(self.config.seed)
            random.seed(self.config.seed)
            return
        rs = self._rng_state
        if rs.get("rng_torch") is not None:
            torch.set_rng_state(rs["rng_torch"])
        if rs.get("rng_cuda") and self.device.startswith("cuda"):
            torch.cuda.set_rng_state_all(rs["rng_cuda"])
        if rs.get("rng_python") is not None:
            random.setstate(rs["rng_python"])

    # ------------------------------------------------------------------------------------------------- events
    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self._emit(StateEvent(self.run_id, state=state, message=message, step=self.step, epoch=self.epoch))

    def _post(self, events: list[Event]) -> None:
        """Events raised by a control call: emitted by the trainer's thread while it runs, else right here."""
        with self._cv:
            if self._started and not self._done:
                self._queued.extend(events)
                self._cv.notify_all()
                return
        for ev in events:
            self._emit(ev)

    def publish(self, event: Event) -> None:
        """Hand an event from elsewhere in the run's process (the system monitor) to the sinks, in order."""
        self._emit(event)

    def _emit(self, event: Event) -> None:
        with self._emit_lock:
            sinks = self._sinks
            for sink in sinks:
                try:
                    sink(event)
                except Exception as e:  # a broken sink must not kill training: say so once, keep going
                    if id(sink) in self._failed_sinks:
                        continue
                    self._failed_sinks.add(id(sink))
                    name = getattr(sink, "__qualname__", None) or type(sink).__name__
                    note = ControlEvent(self.run_id, action="error", step=self.step,
                                        detail=f"sink {name} raised {described(e)} (on a {event.kind} event)")
                    for other in sinks:
                        if other is not sink:
                            try:
                                other(note)
                            except Exception:
                                pass
