"""Session-store overhead and completeness.

1. A real headless run (``n2n-tui train --headless --json``, a subprocess) of ``--steps`` steps: every step's loss and
   every evaluation's PSNR must be in the store -- the counts are compared with the JSON event stream.
2. The same training in-process through the ``Trainer``, once with the store's recorder as a sink and once without
   (interleaved): prints the wall-time ratio, and the time spent inside the recorder (timed around every call) as a
   share of the run's wall time. Required: under 3%.

    python benchmarks/bench_store_overhead.py [--steps 2000] [--batch 1] [--skip-cli]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import load, load_avg

from engine.config import RunConfig
from engine.trainer import Trainer
from sessions import Recorder, Store

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--batch", type=int, default=1, help="small batches: many steps per second, the hardest case")
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--eval-every", type=int, default=100)
p.add_argument("--n-val", type=int, default=64)
p.add_argument("--skip-cli", action="store_true")
p.add_argument("--repeats", type=int, default=1)
args = p.parse_args()
subset = args.steps * args.batch // args.epochs
assert subset * args.epochs == args.steps * args.batch, "steps * batch must be a multiple of epochs"
root = Path(__file__).resolve().parent.parent
print(f"engine 1, {args.steps} steps of batch {args.batch} ({args.epochs} epochs of {subset} pairs), eval every "
      f"{args.eval_every} steps on {args.n_val} images, torch threads {torch.get_num_threads()}, "
      f"load average {load_avg()}")

# ------------------------------------------------------------------------------------ 1. a real headless run
if not args.skip_cli:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "tui.cli", "train", "--engine", "1", "--data", "sample", "--noise", "poisson",
               "--subset", str(subset), "--batch-size", str(args.batch), "--epochs", str(args.epochs),
               "--eval-every", str(args.eval_every), "--n-val", str(args.n_val), "--device", "cpu", "--json",
               "--runs-dir", runs]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"headless run failed ({r.returncode}): {r.stderr[-2000:]}")
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        steps = [d for d in lines if d["event"] == "step"]
        evals = [d for d in lines if d["event"] == "eval"]
        with Store(runs) as s:
            run = s.get_run(lines[0]["run"])
        m_loss = [m for m in run["metrics"] if m["loss"] is not None]
        m_psnr = [m for m in run["metrics"] if m["psnr"] is not None]
        same = ([m["step"] for m in m_loss] == [d["step"] for d in steps]
                and [m["loss"] for m in m_loss] == [d["loss"] for d in steps]
                and [(m["step"], m["psnr"]) for m in m_psnr] == [(d["step"], d["psnr"]) for d in evals])
        print(f"headless run: {took:.1f} s, JSON stream {len(steps)} steps / {len(evals)} evals, store "
              f"{len(m_loss)} loss points / {len(m_psnr)} PSNR points, state {run['state']}: "
              f"{'counts and values match' if same else 'MISMATCH'}")
        if not same:
            sys.exit(1)

# ------------------------------------------------------------------------ 2. with and without the recorder
ds = load("poisson", subset, args.n_val)
config = RunConfig(engine=1, data="sample", noise="poisson", epochs=args.epochs, batch_size=args.batch,
                   subset=subset, n_val=args.n_val, eval_every=args.eval_every, device="cpu")


def run_once(with_store: bool) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        run_id = store.new_run(config)
        t = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=ds)
        spent = [0.0, 0]
        if with_store:
            rec = Recorder(store, run_id)

            def timed(ev):
                t0 = time.perf_counter()
                rec(ev)
                spent[0] += time.perf_counter() - t0
                spent[1] += 1

            t.add_sink(timed)
        t0 = time.perf_counter()
        assert t.run() == "finished"
        wall = time.perf_counter() - t0
        if with_store:
            assert len([m for m in store.get_run(run_id)["metrics"] if m["loss"] is not None]) == args.steps
        store.close()
        return wall, spent[0], spent[1]


walls = {True: [], False: []}
for r in range(args.repeats):
    for with_store in ((False, True) if r % 2 == 0 else (True, False)):   # alternate which arm goes first
        wall, spent, calls = run_once(with_store)
        walls[with_store].append(wall)
        if with_store:
            share = spent / wall
            print(f"  round {r + 1}: with store {wall:6.1f} s, of which {spent * 1000:7.1f} ms inside the recorder "
                  f"({calls} events, {spent / calls * 1e6:5.1f} us each): {share:.2%} of the wall time")
        else:
            print(f"  round {r + 1}: without store {wall:6.1f} s")
ratio = statistics.median(walls[True]) / statistics.median(walls[False])     # medians over the rounds
print(f"wall time with store / without: {ratio:.3f} (+{ratio - 1:.1%}); recorder share of wall time {share:.2%} "
      f"(required < 3%)  [load average now {load_avg()}]")
sys.exit(0 if share < 0.03 else 1)
