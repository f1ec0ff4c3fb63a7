"""Fresh training pairs every epoch (``RunConfig.fresh``, ``n2n-tui train --fresh``).

A generated data source (``sample``, ``images:DIR``, ``leaves`` and their mixtures) keeps the clean crops behind its
training pairs. With ``fresh`` on, epoch 0 trains on the pairs the source was loaded with, and every later epoch ``e``
on new ones: both noisy versions of every clean crop drawn again, independently, and, for the crops of the ``leaves``
share, new dead-leaves images; photographs keep their crops. Everything is seeded by ``(seed, e)`` alone
(:func:`fresh_seed`), so a rerun, or a run resumed at epoch ``e``, trains on the same pairs as one never stopped.

:class:`PairMaker` draws the next epoch's pairs in a background thread while the current epoch trains. That thread
runs its torch operations on one CPU thread (OpenMP keeps the count per thread; ``torch.set_num_threads`` would change
it for the training loop's thread too), so it takes one core beside the loop rather than the loop's own.

:class:`TrainPairs` (a part of ``engine.trainer.Trainer``) puts the pairs in place at each epoch's start: the fresh
ones, or those handed to ``Trainer.set_train_pairs``.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from dataclasses import replace

import torch

from .config import ConfigError
from .events import ControlEvent
from .leaves import leaves_crops
from .noise import corrupt, corrupt_target


def fresh_seed(seed: int, epoch: int, stream: str) -> int:
    """The seed of one stream (``input``, ``target``, ``leaves``) of epoch ``epoch``'s pairs: a hash, so that it
    repeats no seed that ``engine.data`` gives its generators (a CPU generator keeps only 32 bits of a seed)."""
    digest = hashlib.sha256(f"n2n-tui/fresh/{seed}/{epoch}/{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def epoch_pairs(clean: torch.Tensor, leaves: torch.Tensor | None, noise: str, seed: int, epoch: int,
                float_targets: bool = False):
    """Epoch ``epoch``'s training pairs: ``(input, target, clean)``, uint8 like ``clean`` (N, 3, H, W); the targets
    float32 with ``float_targets`` (``noise.corrupt_target``). ``leaves`` (bool (N,), or None) marks the crops
    replaced by new dead-leaves images."""
    if leaves is not None and bool(leaves.any()):
        clean = clean.clone()
        idx = leaves.nonzero().flatten()
        g = torch.Generator().manual_seed(fresh_seed(seed, epoch, "leaves"))
        clean[idx] = leaves_crops(len(idx), g, size=clean.shape[-1])
    x = corrupt(clean, noise, torch.Generator().manual_seed(fresh_seed(seed, epoch, "input")))
    y = (corrupt_target if float_targets else corrupt)(clean, noise,
                                                       torch.Generator().manual_seed(fresh_seed(seed, epoch, "target")))
    return x, y, clean


def one_thread() -> bool:
    """Run this thread's torch operations on one CPU thread, leaving every other thread's count as it is; False
    where torch's OpenMP runtime cannot be reached (then this thread uses torch's count)."""
    torch.get_num_threads()  # torch sets up a thread's count on its first use: before ours, or it would undo it
    try:
        ctypes.CDLL(None).omp_set_num_threads(1)
    except (AttributeError, OSError):
        return False
    return True


class _Job:
    """One epoch's pairs, drawn in a daemon thread."""

    def __init__(self, fn, epoch: int):
        self.epoch, self.result, self.error = epoch, None, None
        self.done = threading.Event()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._work, args=(fn,), name=f"fresh-pairs-{epoch}", daemon=True)
        self.thread.start()

    def _work(self, fn) -> None:
        t0 = time.perf_counter()
        try:
            one_thread()
            self.result = fn(self.epoch)
        except Exception as e:  # handed to the training loop, which fails the run with it
            self.error = e
        finally:
            self.seconds = time.perf_counter() - t0
            self.done.set()


class PairMaker:
    """The fresh pairs of a data set's epochs: ``start(e)`` begins drawing epoch ``e``'s in the background,
    ``job(e)`` gives that draw (starting it when nobody did), whose ``done`` event is set when ``result`` (or
    ``error``) is there. One draw at a time is kept."""

    def __init__(self, clean: torch.Tensor, leaves: torch.Tensor | None, noise: str, seed: int,
                 float_targets: bool = False):
        if leaves is not None and leaves.shape != (len(clean),):
            raise ValueError(f"the leaves mask has shape {tuple(leaves.shape)}, expected ({len(clean)},)")
        self.clean, self.leaves, self.noise, self.seed = clean, leaves, noise, seed
        self.float_targets = float_targets
        self._job: _Job | None = None

    @classmethod
    def of(cls, ds, seed: int, float_targets: bool = False) -> "PairMaker":
        """The pair maker of data set ``ds`` (``engine.data.Dataset``); ConfigError when it keeps no clean images."""
        if ds.train_clean is None or ds.noise is None:
            raise ConfigError(f"fresh: {ds.source} has no clean images behind its training pairs to draw new pairs "
                              "from")
        return cls(ds.train_clean, ds.train_leaves, ds.noise, seed, float_targets)

    def pairs(self, epoch: int):
        """Epoch ``epoch``'s pairs, drawn here and now."""
        return epoch_pairs(self.clean, self.leaves, self.noise, self.seed, epoch, self.float_targets)

    def started(self, epoch: int) -> bool:
        """Whether epoch ``epoch``'s draw is under way (or done)."""
        return self._job is not None and self._job.epoch == epoch

    def start(self, epoch: int) -> None:
        if self._job is None or self._job.epoch != epoch:
            self._job = _Job(self.pairs, epoch)

    def job(self, epoch: int) -> _Job:
        self.start(epoch)
        return self._job


class TrainPairs:
    """The pairs each epoch trains on (a part of ``engine.trainer.Trainer``: it uses the trainer's data set, lock,
    counters and event sinks)."""

    def set_train_pairs(self, inputs: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor | None = None) -> None:
        """Train on these pairs from the next epoch's start on (never within an epoch, never within a step; before
        the run starts: from its first epoch). They must match the pairs they replace (``dataset.train_input``) in
        count, shape and dtype; ``clean``, when given, is the images behind them. Thread-safe; a mismatch is a
        one-line ValueError. With ``config.fresh`` the trainer draws each epoch's pairs itself: these then last one
        epoch."""
        ds = self.dataset
        if ds is None or not self.steps_per_epoch:
            raise ValueError("set_train_pairs: no training pairs yet to replace (call prepare() first)")
        shape, dtype = tuple(ds.train_input.shape), ds.train_input.dtype
        for name, t in (("inputs", inputs), ("targets", targets), ("clean", clean)):
            if name == "clean" and t is None:
                continue
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
                got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"set_train_pairs: {name} must be {shape} {dtype}, like the pairs they replace; "
                                 f"got {got}")
        with self._cv:
            self._next_pairs = (inputs, targets, clean)

    def _start_epoch(self, e: int) -> bool:
        """The pairs epoch ``e`` trains on: fresh ones (``config.fresh``, from the second epoch on; waited for when
        not drawn yet), or those of ``set_train_pairs``; then the next epoch's start drawing. False: stopped while
        waiting."""
        pairs = None
        if self._fresh is not None and e >= 1:
            ahead, job = self._fresh.started(e), self._fresh.job(e)
            if not job.done.is_set():  # not drawn yet: the loop waits, and says so (drawing is the bottleneck)
                t0 = time.monotonic()
                while not job.done.wait(0.1):
                    if self._want_stop:
                        return False
                why = "slower than training an epoch" if ahead else "the run resumed in this epoch"
                self._emit(ControlEvent(self.run_id, action="data", step=self.step, value=time.monotonic() - t0,
                                        detail=f"waited {time.monotonic() - t0:.1f} s for epoch {e + 1}'s fresh "
                                               f"training pairs (drawn in {job.seconds:.1f} s: {why})"))
            if job.error is not None:
                raise job.error
            pairs = job.result
            self.fresh_epochs += 1
        with self._cv:
            pairs, self._next_pairs = self._next_pairs or pairs, None
        if pairs is not None:
            x, y, clean = pairs
            self.dataset = replace(self.dataset, train_input=x, train_target=y, train_clean=clean)
            self._train_x, self._train_y = x.to(self._train_x.device), y.to(self._train_y.device)
        if self._fresh is not None and e + 1 < self.config.epochs:
            self._fresh.start(e + 1)
        return True
