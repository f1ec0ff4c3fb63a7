"""Plain event objects the trainer emits; sinks (sessions store, dashboard, headless printer) consume them.

Every event is a frozen dataclass with a ``kind`` and the run id; ``to_dict()`` gives the JSON object printed by
``n2n-tui train --json`` (one per line). Sample patches are excluded from JSON.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

Patches = "torch.Tensor | numpy.ndarray"  # uint8 (K, 3, H, W)
_PATCHES = ("noisy", "denoised", "clean")  # image arrays: never in to_dict()
_OPTIONAL = ("value", "name")  # left out of to_dict() when None


@dataclass(frozen=True)
class Event:
    run: str
    time: float = field(default_factory=time.time, kw_only=True)
    kind = "event"

    def to_dict(self) -> dict:
        d = {"event": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in _PATCHES and not (v is None and f.name in _OPTIONAL):
                d[f.name] = v
        return d


@dataclass(frozen=True)
class StateEvent(Event):
    """The run changed state: running, paused, stopped, finished, failed (message says why)."""
    state: str
    message: str = ""
    step: int = 0
    epoch: int = 0
    kind = "state"


@dataclass(frozen=True)
class StepEvent(Event):
    """One optimizer step: ``step`` counts from 1 over the whole run, ``epoch`` from 1."""
    step: int
    epoch: int
    loss: float
    lr: float
    img_per_s: float
    total_steps: int = 0
    kind = "step"


@dataclass(frozen=True)
class EvalEvent(Event):
    """A validation pass. ``noisy``/``denoised``/``clean`` are a few fixed validation images as uint8 (K, 3, H, W):
    torch tensors from the trainer, numpy arrays where they came through a socket or the store (viewers import no
    torch)."""
    step: int
    epoch: int
    psnr: float
    best_psnr: float
    noisy: Patches | None = None
    denoised: Patches | None = None
    clean: Patches | None = None
    psnr_noisy: float | None = None  # PSNR of the noisy validation input itself (the baseline to beat)
    kind = "eval"


@dataclass(frozen=True)
class SavedEvent(Event):
    """A checkpoint was written: ``what`` is "best" (best-validation weights), "state" (full training state) or
    "export" (a grader-ready bestmodel.pth)."""
    path: str
    psnr: float | None
    step: int = 0
    what: str = "best"
    kind = "saved"


@dataclass(frozen=True)
class ControlEvent(Event):
    """A control action took effect: pause, resume, stop, lr (detail: "old -> new", value: the new rate), set (a live
    hyper-parameter: name, value), guard (NaN/explosion)."""
    action: str
    detail: str = ""
    step: int = 0
    value: float | None = None
    name: str | None = None       # lr, set: the hyper-parameter changed
    kind = "control"


@dataclass(frozen=True)
class SystemEvent(Event):
    """What the machine is doing, every few seconds while a run trains (``engine.system``): host CPU %, the run's
    process memory (RSS, bytes), GPU utilisation (%) and memory (bytes) when a GPU is used, free disk (bytes) where
    the run's files go, torch's CPU threads and how many cores other processes keep busy (``engine.threads``). A
    value that cannot be read is None."""
    step: int = 0
    cpu: float | None = None
    rss: float | None = None
    gpu_util: float | None = None
    gpu_mem: float | None = None
    disk_free: float | None = None
    threads: int | None = None
    busy: float | None = None
    kind = "system"

