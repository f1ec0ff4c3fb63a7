"""How often a run measures its validation PSNR: ``eval_every`` is a number of steps, 0 for epoch ends only, or
``auto`` (the default): about ``AUTO_EVALS`` evaluations over the run and at least one every ``MIN_GAP_SECONDS``, so
the PSNR curve moves from a default run's first minute, unless an evaluation costs more than ``MAX_SHARE`` of that
time (a big validation set on a slow machine: then the step count alone decides). Every epoch end evaluates too.

In the live settings channel, which carries numbers, ``auto`` is -1 (0 already means epoch ends only).
"""
from __future__ import annotations

import time

AUTO = -1
AUTO_EVALS = 20          # evaluations over a whole run, by the step count
MIN_GAP_SECONDS = 60.0   # ... and at least one this often
MAX_SHARE = 0.1          # ... while an evaluation costs at most this share of that gap
MAX_EVAL_EVERY = 10**9


def parse_eval_every(value) -> int:
    """``auto`` -> AUTO, a whole number of steps from 0 -> itself; ValueError naming the problem. The number AUTO
    (-1) is taken as a number only (the settings channel's), not as text a person typed."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == AUTO and isinstance(value, int) and not isinstance(value, bool):
        return AUTO
    text = str(value).strip().lower()
    if text == "auto":
        return AUTO
    try:
        n = int(text)
        if str(n) != text.lstrip("+") or not 0 <= n <= MAX_EVAL_EVERY:
            raise ValueError
    except ValueError:
        raise ValueError(f"eval_every must be auto, 0 (epoch ends only) or a number of steps up to "
                         f"{MAX_EVAL_EVERY:,}, got {value!r}") from None
    return n


def eval_every_text(setting: int) -> str:
    return "auto" if setting == AUTO else str(setting)


class EvalCadence:
    """``due(step, total_steps)`` after each step; ``evaluated(seconds)`` after each evaluation."""

    def __init__(self, setting: int, clock=time.monotonic):
        self.setting, self.clock = setting, clock
        self.last = clock()
        self.cost = 0.0

    def every(self, total_steps: int) -> int:
        """Steps between evaluations by the step count (0: none)."""
        if self.setting != AUTO:
            return self.setting
        return max(1, round(total_steps / AUTO_EVALS)) if total_steps else 0

    def due(self, step: int, total_steps: int) -> bool:
        every = self.every(total_steps)
        if every and step % every == 0:
            return True
        return self.setting == AUTO and self.clock() - self.last >= MIN_GAP_SECONDS \
            and self.cost <= MAX_SHARE * MIN_GAP_SECONDS

    def evaluated(self, seconds: float) -> None:
        self.last, self.cost = self.clock(), seconds
