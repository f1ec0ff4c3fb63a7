"""Miniproject_2 training speed: images/s of Model.train_step on 32x32 pairs at the model's batch size, and the
projected time of the grader's one epoch on 50 000 pairs (required: at most 15 min on a 2-core CPU).

    python benchmarks/bench_mp2_epoch.py [--seconds 30] [--threads 2]

Numbers depend on what else runs on the machine: the load average is printed with them.
"""
import argparse
import time

import torch

from _common import load_avg
from Miniproject_2.model import Model

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=30)
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)

torch.manual_seed(0)
m = Model()
bs = m.batch_size
x = (torch.rand(50 * bs, 3, 32, 32) * 255).to(torch.uint8)
y = (torch.rand(50 * bs, 3, 32, 32) * 255).to(torch.uint8)
load_before = load_avg()
for i in range(3):  # warm-up
    m.train_step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs])
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < args.seconds:
    i = (n // bs) % 50
    m.train_step(x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs])
    n += bs
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
ips = n / wall
print(f"device {m.device}, torch threads {torch.get_num_threads()}, batch {bs}, widths c1={m.config['c1']} "
      f"c2={m.config['c2']}, load avg {load_before} before, {load_avg()} after")
print(f"train_step: {ips:.0f} images/s ({cpu / wall:.2f} CPU cores busy on average); one epoch of 50000 pairs: "
      f"{50000 / ips / 60:.1f} min (limit 15 min)")
