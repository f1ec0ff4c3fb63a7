"""Shared bits of the benchmark scripts: a fixed data set, and a plain training loop over ``train_step``."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# One torch thread unless N2N_THREADS says otherwise: on a shared 2-core machine, two OpenMP threads that wait for
# each other at every small operation run several times slower than one (measured here, load 4-6).
torch.set_num_threads(int(os.environ.get("N2N_THREADS", "1")))


def load(noise: str, n_train: int, n_val: int, seed: int = 0):
    from engine.data import load_data

    return load_data("sample", noise=noise, seed=seed, n_train=n_train, n_val=n_val)


def train_steps(step_fn, inputs: torch.Tensor, targets: torch.Tensor, steps: int, batch: int, seed: int = 0) -> float:
    """``steps`` calls of ``step_fn(x, y)`` on shuffled batches; returns images per second."""
    g = torch.Generator().manual_seed(seed)
    n = len(inputs)
    order = torch.randperm(n, generator=g)
    pos, t0 = 0, time.perf_counter()
    for _ in range(steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        step_fn(inputs[idx], targets[idx])
    return steps * batch / (time.perf_counter() - t0)


def load_avg() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"
