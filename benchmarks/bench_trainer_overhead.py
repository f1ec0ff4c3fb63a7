"""Trainer overhead: the same engine-1 training (same model seed, same batches, same number of steps) through the
``Trainer`` -- with its evaluations (step 0 and epoch end, or every ``--eval-every`` steps), best-weight and full-state
checkpoints, per-step events and a JSON-lines sink -- and through a bare loop over ``Model.train_step``.

Two ratios (required: at least 0.95):
- A/B: bare-loop time / trainer time, the medians of ``--repeats`` interleaved rounds (alternating which goes first).
  On a shared, loaded machine the two arms see different loads and this swings by several percent either way.
- accounting: time spent inside ``train_step`` / wall time of the trainer run, measured in the same run. Everything
  the trainer adds (evaluations, checkpoints, events, control checks, batch indexing) is the difference, so this is the
  throughput ratio to a bare loop that is immune to load drift between the two arms.

    python benchmarks/bench_trainer_overhead.py [--steps 200] [--batch 16] [--n-val 160] [--eval-every 0]
"""
import argparse
import io
import statistics
import tempfile
import time

import torch
from _common import load, load_avg

from engine.config import RunConfig
from engine.headless import JsonLines
from engine.models import new_model
from engine.trainer import Trainer

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=200)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--n-val", type=int, default=160, help="validation images per evaluation (default: 5%% of the "
                                                      "training images, the proportion of the default 1000 / 20000)")
p.add_argument("--eval-every", type=int, default=0, help="0: at step 0 and the epoch end only (the default cadence)")
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

n = args.steps * args.batch
ds = load("mix", n, args.n_val)
config = RunConfig(engine=1, data="sample", noise="mix", epochs=1, batch_size=args.batch, subset=n, n_val=args.n_val,
                   eval_every=args.eval_every, device="cpu")


def bare() -> float:
    torch.manual_seed(config.seed)
    m = new_model(1, "cpu")
    m.batch_size = args.batch
    torch.manual_seed(config.seed)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 1_000_003))
    t0 = time.perf_counter()
    for i in range(args.steps):
        idx = order[i * args.batch:(i + 1) * args.batch]
        m.train_step(ds.train_input[idx], ds.train_target[idx])
    return time.perf_counter() - t0


def trainer() -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(config, run_dir=d, dataset=ds)
        counts = {}
        t.add_sink(lambda e: counts.__setitem__(e.kind, counts.get(e.kind, 0) + 1))
        t.add_sink(JsonLines(io.StringIO()))
        inside, step = [0.0], t.model.train_step

        def timed_step(x, y):
            t0 = time.perf_counter()
            try:
                return step(x, y)
            finally:
                inside[0] += time.perf_counter() - t0

        t.model.train_step = timed_step
        t0 = time.perf_counter()
        assert t.run() == "finished" and t.step == args.steps
        return time.perf_counter() - t0, inside[0], counts


print(f"engine 1, {args.steps} steps of batch {args.batch}, {args.n_val} validation images, eval "
      f"{'at step 0 and epoch end' if not args.eval_every else f'every {args.eval_every} steps'}, "
      f"torch threads {torch.get_num_threads()}, load average {load_avg()}")
bare_times, trainer_times, accounting = [], [], []
for r in range(args.repeats):
    if r % 2:                      # alternate which arm goes first
        tt, inside, counts = trainer()
        bare_times.append(bare())
    else:
        bare_times.append(bare())
        tt, inside, counts = trainer()
    trainer_times.append(tt)
    accounting.append(inside / tt)
    print(f"  round {r + 1}: bare {bare_times[-1]:6.2f} s ({n / bare_times[-1]:6.1f} img/s)   trainer "
          f"{tt:6.2f} s ({n / tt:6.1f} img/s), of which {inside:6.2f} s in train_step and {tt - inside:5.2f} s "
          f"its own   events {counts}")
ratio = statistics.median(bare_times) / statistics.median(trainer_times)
acc = statistics.median(accounting)
print(f"throughput ratio trainer / bare loop (medians of {args.repeats} interleaved rounds): A/B {ratio:.3f}, "
      f"accounting {acc:.3f} (required >= 0.95)  "
      f"[load average now {load_avg()}]")
raise SystemExit(0 if acc >= 0.95 else 1)
