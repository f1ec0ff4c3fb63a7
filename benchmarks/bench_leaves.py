"""Dead-leaves generation against training: crops/s of ``engine.leaves.leaves_crops`` (one torch thread and the
default count) and, in the same run, the crops/s a training step consumes at batch 64 (``Model.train_step`` of
engines 1 and 2 on the CPU, the trainer's inner step), and their ratio (above 1: generation outruns training).

    python benchmarks/bench_leaves.py
    python benchmarks/bench_leaves.py --crops 4096 --steps 20 --repeats 3

The data of a run is generated once before training (``load_data``), so the ratio also says how many training steps'
worth of time generating a data set of N pairs costs: N / generation rate. The load average is printed before and
after; medians over ``--repeats``, the generators and the models timed interleaved.
"""
import argparse

import torch
from _common import header, interleaved, load, load_avg, train_steps

from engine.leaves import leaves_crops
from engine.models import new_model

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--crops", type=int, default=2048, help="crops per timed generation")
p.add_argument("--steps", type=int, default=10, help="training steps per timed window")
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()

default_threads = torch.get_num_threads()
print(header("bench_leaves"))


def generate(threads):
    def run():
        torch.set_num_threads(threads)
        leaves_crops(args.crops, torch.Generator().manual_seed(0))
        torch.set_num_threads(default_threads)
    return run


ds = load("gaussian", n_train=1024, n_val=8)
models = {e: new_model(e) for e in (1, 2)}


def train(engine):
    return lambda: train_steps(models[engine].train_step, ds.train_input, ds.train_target, args.steps,
                               args.batch_size)


times = interleaved({"leaves, 1 thread": generate(1), f"leaves, {default_threads} threads": generate(default_threads),
                     "engine 1 train_step": train(1), "engine 2 train_step": train(2)}, args.repeats)
rates = {name: (args.crops if name.startswith("leaves") else args.steps * args.batch_size) / t
         for name, t in times.items()}
gen = max(rates["leaves, 1 thread"], rates[f"leaves, {default_threads} threads"])
for name, rate in rates.items():
    print(f"{name:24s} {rate:9.0f} crops/s")
for e in (1, 2):
    print(f"ratio generation / engine {e} training at batch {args.batch_size}: "
          f"{gen / rates[f'engine {e} train_step']:.1f}x (1 thread: "
          f"{rates['leaves, 1 thread'] / rates[f'engine {e} train_step']:.1f}x)")
print(f"load average after: {load_avg()}")
