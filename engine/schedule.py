"""Learning-rate schedules, in the engine so that both engines get the same ones.

``factor(t, total)`` is what multiplies the base learning rate at step ``t`` (0-based: the ``t``-th optimizer step
runs at ``base * factor(t, total)``), in closed form, the same as PyTorch's schedulers of the same name:

- ``constant``: 1.
- ``cosine``: ``CosineAnnealingLR`` from 1 down to ``decay_to`` over the steps after the warm-up.
- ``step``: ``StepLR``: times ``gamma`` every ``step_every`` steps after the warm-up (0, the default: every epoch,
  ``epoch_steps``).
- ``onecycle``: ``OneCycleLR`` (cosine phases): from 1/25 up to 1 over the warm-up (30% of the run without one),
  then down to ``decay_to``.

A warm-up of ``W`` steps (every schedule but ``onecycle``, whose rise is its warm-up) ramps linearly: step ``t < W``
runs at ``(t + 1) / W``. The total may change while training (a live batch-size change): the schedule follows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "cosine", "step", "onecycle")
ONECYCLE_DIV = 25.0       # OneCycleLR's div_factor: the rise starts at base / 25
ONECYCLE_PCT = 0.3        # ... and takes 30% of the run when no warm-up is given


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"
    warmup: int = 0
    decay_to: float = 0.01    # cosine, onecycle: the final learning rate as a fraction of the base
    step_every: int = 0       # step: steps between two decays (0: one epoch)
    gamma: float = 0.5        # step: the factor of each decay

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")

    @property
    def varies(self) -> bool:
        return self.kind != "constant" or self.warmup > 0

    def factor(self, t: int, total: int, epoch_steps: int = 0) -> float:
        total = max(int(total), 1)
        w = max(int(self.warmup), 0)
        if self.kind == "onecycle":
            return self._onecycle(t, total, w)
        if t < w:
            return (t + 1) / w
        k, span = t - w, max(total - w, 1)
        if self.kind == "cosine":
            return self.decay_to + (1.0 - self.decay_to) * (1.0 + math.cos(math.pi * min(k, span) / span)) / 2.0
        if self.kind == "step":
            every = int(self.step_every) or int(epoch_steps) or total
            return self.gamma ** (k // max(every, 1))
        return 1.0

    def _onecycle(self, t: int, total: int, w: int) -> float:
        # torch.optim.lr_scheduler.OneCycleLR with anneal_strategy="cos", three_phase=False
        start, end = 1.0 / ONECYCLE_DIV, self.decay_to
        up = (w if w else ONECYCLE_PCT * total) - 1
        if t <= up:
            pct = t / up if up > 0 else 1.0
            return _cos(start, 1.0, pct)
        pct = (t - up) / max(total - 1 - up, 1e-12)
        return _cos(1.0, end, min(pct, 1.0))


def _cos(a: float, b: float, pct: float) -> float:
    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)
