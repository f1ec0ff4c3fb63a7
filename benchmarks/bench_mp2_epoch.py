"""Miniproject_2 training speed: images/s of Model.train_step on 32x32 pairs at the model's batch size, and the
projected time of the grader's one epoch on 50 000 pairs (target: at most 10 min on the 2-core CPU).

    python benchmarks/bench_mp2_epoch.py                                   # the default Model(), torch's threads
    python benchmarks/bench_mp2_epoch.py --threads 1
    python benchmarks/bench_mp2_epoch.py --config 64,96,64 --config 96,128,96   # several widths, interleaved
    python benchmarks/bench_mp2_epoch.py --code DIR          # the Miniproject_2 found in DIR (an older export)

Each configuration is timed in ``--repeats`` windows of ``--steps`` steps, interleaved with the others, and reports
the median; the load average is printed before and after (the numbers depend on what else runs).
"""
import argparse
import sys
from pathlib import Path

import torch
from _common import core_to_core_ns, epoch_speed, header, load_avg, print_core_to_core, set_threads, wait_quiet

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--config", action="append", default=None, help="c1,c2[,c3[,k]] (repeatable; default: Model()'s)")
p.add_argument("--batch-size", type=int, default=None, help="default: the Model's own")
p.add_argument("--steps", type=int, default=40, help="steps per timed window")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
p.add_argument("--wait-quiet", type=float, default=0, help="wait until the load average is below this")
p.add_argument("--code", default=None, help="import Miniproject_2 from this folder instead of the repository")
args = p.parse_args()
if args.code:
    sys.path.insert(0, str(Path(args.code).resolve()))
from Miniproject_2.model import Model  # noqa: E402  (after --code)

set_threads(args.threads)
torch.set_grad_enabled(False)

torch.manual_seed(0)
models = {}
for spec in args.config or [None]:
    if spec is None:
        m = Model(device="cpu")
    else:
        m = Model(device="cpu", **dict(zip(("c1", "c2", "c3", "k"), (int(v) for v in spec.split(",")))))
    if args.batch_size:
        m.batch_size = args.batch_size
    c = m.config
    models[" ".join(f"{k}={v}" for k, v in c.items() if k != "loss")] = m
print(header(f"batch {next(iter(models.values())).batch_size}, {args.repeats} interleaved windows of {args.steps} "
             f"steps (median)"), flush=True)
if args.wait_quiet:
    wait_quiet(args.wait_quiet)
before, c2c_before = load_avg(), core_to_core_ns()
speed = epoch_speed(models, args.repeats, args.steps)
for name, ips in speed.items():
    n = sum(p.numel() for p, _ in models[name].net.param())
    print(f"  {name} ({n} parameters): {ips:.0f} images/s; one epoch of 50000 pairs: {50000 / ips / 60:.1f} min "
          f"(target <= 10 min)")
print(f"load average {before} before, {load_avg()} after")
print_core_to_core(c2c_before)  # where the host ran the two CPUs (see probe_conv_modes.py)
