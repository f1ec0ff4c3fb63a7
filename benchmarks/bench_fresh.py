"""Fresh pairs against training: crops/s of ``engine.fresh``'s background draw of an epoch's pairs (new noise on both
versions; for ``leaves`` new dead-leaves images too), in its own worker thread pinned to one torch thread as the
trainer runs it, against the crops/s a batch-64 ``Model.train_step`` consumes at one torch thread (engines 1 and 2,
on the CPU), and their ratio: above 1, the next epoch's pairs are ready before the current epoch ends; below 1, the
loop waits for them (a ``data`` event) and generation is the bottleneck.

    python benchmarks/bench_fresh.py
    python benchmarks/bench_fresh.py --crops 4096 --steps 20 --repeats 3

The load average is printed before and after; medians over ``--repeats``, the draws and the models timed
interleaved. Noise ``mix`` (a random model and strength per image), the default of a run.
"""
import argparse

import torch
from _common import header, interleaved, load_avg, train_steps

from engine.data import load_data
from engine.fresh import PairMaker
from engine.models import new_model

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--crops", type=int, default=2048, help="training pairs per timed draw")
p.add_argument("--steps", type=int, default=10, help="training steps per timed window")
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()

torch.set_num_threads(1)  # the training loop's side: one thread, as the draw's
print(header("bench_fresh"))
sources = {name: load_data(name, noise="mix", seed=0, n_train=args.crops, n_val=8) for name in ("sample", "leaves")}
makers = {name: PairMaker.of(ds, 0) for name, ds in sources.items()}
draws = {name: 0 for name in makers}


def draw(name):
    def run():
        draws[name] += 1
        job = makers[name].job(draws[name])  # a new epoch each time: a real draw in the worker thread
        job.done.wait()
        if job.error is not None:
            raise job.error
    return run


ds = sources["sample"]
models = {e: new_model(e, "cpu") for e in (1, 2)}


def train(engine):
    return lambda: train_steps(models[engine].train_step, ds.train_input, ds.train_target, args.steps,
                               args.batch_size)


times = interleaved({"fresh sample, 1 thread": draw("sample"), "fresh leaves, 1 thread": draw("leaves"),
                     "engine 1 train_step": train(1), "engine 2 train_step": train(2)}, args.repeats)
rates = {name: (args.crops if name.startswith("fresh") else args.steps * args.batch_size) / t
         for name, t in times.items()}
for name, rate in rates.items():
    print(f"{name:24s} {rate:9.0f} crops/s")
for source in makers:
    for e in (1, 2):
        print(f"ratio fresh {source} / engine {e} training at batch {args.batch_size}: "
              f"{rates[f'fresh {source}, 1 thread'] / rates[f'engine {e} train_step']:.1f}x")
print(f"load average after: {load_avg()}")
