"""Miniproject_1 training speed: images/s of Model.train_step on 32x32 pairs at the model's batch size, and the
projected time of the grader's one epoch on 50 000 pairs (required: at most 20 min on a 2-core CPU).

    python benchmarks/bench_mp1_epoch.py [--seconds 30]
Numbers depend on what else runs on the machine: the load average is printed with them.
"""
import argparse
import time

import torch

from _common import load_avg
from Miniproject_1.model import Model

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=30)
args = p.parse_args()

torch.manual_seed(0)
m = Model()
bs = m.batch_size
x = (torch.rand(50 * bs, 3, 32, 32) * 255).to(torch.uint8)
y = (torch.rand(50 * bs, 3, 32, 32) * 255).to(torch.uint8)
for i in range(3):  # warm-up
    m.train_step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs])
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < args.seconds:
    i = (n // bs) % 50
    m.train_step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs])
    n += bs
ips = n / (time.perf_counter() - t0)
print(f"device {m.device}, torch threads {torch.get_num_threads()}, batch {bs}, load avg {load_avg()}")
print(f"train_step: {ips:.0f} images/s; one epoch of 50000 pairs: {50000 / ips / 60:.1f} min (limit 20 min)")
