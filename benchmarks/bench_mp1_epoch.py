"""Miniproject_1 training speed: images/s of Model.train_step on 32x32 pairs at the model's batch size, and the
projected time of the grader's one epoch on 50 000 pairs (target: at most 10 min on the 2-core CPU).

    python benchmarks/bench_mp1_epoch.py                                   # the default Model(), torch's threads
    python benchmarks/bench_mp1_epoch.py --threads 1
    python benchmarks/bench_mp1_epoch.py --widths 32,48,64 --widths 48,64,96    # several U-Nets, interleaved

Each network is timed in ``--repeats`` windows of ``--steps`` steps, interleaved with the others, and reports the
median; the load average is printed before and after (the numbers depend on what else runs).
"""
import argparse

import torch
from _common import epoch_speed, header, load_avg, set_threads, wait_quiet

from Miniproject_1.model import Model

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--widths", action="append", default=None, help="U-Net widths, e.g. 32,48,64 (repeatable)")
p.add_argument("--batch-size", type=int, default=None, help="default: the Model's own")
p.add_argument("--steps", type=int, default=30, help="steps per timed window")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
p.add_argument("--wait-quiet", type=float, default=0, help="wait until the load average is below this")
args = p.parse_args()
set_threads(args.threads)

torch.manual_seed(0)
models = {}
for spec in args.widths or [None]:
    m = Model(device="cpu") if spec is None else Model(widths=tuple(int(w) for w in spec.split(",")), device="cpu")
    if args.batch_size:
        m.batch_size = args.batch_size
    models["widths " + ",".join(map(str, m.config["widths"]))] = m
print(header(f"batch {next(iter(models.values())).batch_size}, {args.repeats} interleaved windows of {args.steps} "
             f"steps (median)"), flush=True)
if args.wait_quiet:
    wait_quiet(args.wait_quiet)
before = load_avg()
speed = epoch_speed(models, args.repeats, args.steps)
for name, ips in speed.items():
    n = sum(p.numel() for p in models[name].net.parameters())
    print(f"  {name} ({n} parameters): {ips:.0f} images/s; one epoch of 50000 pairs: {50000 / ips / 60:.1f} min "
          f"(target <= 10 min)")
print(f"load average {before} before, {load_avg()} after")
