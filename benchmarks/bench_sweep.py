"""What does a sweep cost over running the same trials by hand? The same 4 trials (engine 1, a learning-rate grid)
as one sweep at concurrency 1 and as 4 sequential ``train --headless`` runs, interleaved over rounds: the wall-time
ratio sweep / sequential (goal at most 1.1). Then the same sweep at concurrency 2: trials per hour on this machine.

    python benchmarks/bench_sweep.py                  # 4 trials of 1000 pairs, 1 epoch; 2 rounds
    python benchmarks/bench_sweep.py --rounds 1 --subset 400

Wall times include everything a user waits for: Python and Ray start-up, data generation, training, evaluations.
Each trial (and each headless run) trains with one torch thread (Ray gives a 1-CPU trial one thread; the headless
runs get OMP_NUM_THREADS=1 to match).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_avg

LRS = [3e-3, 2e-3, 1e-3, 5e-4]


def env() -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    e.pop("N2N_RUNS_DIR", None)
    e.pop("RAY_ADDRESS", None)
    return e


def spec(path: Path, subset: int, concurrency: int) -> Path:
    path.write_text(f"""engine = 1
data = "sample"
noise = "mix"
epochs = 1
subset = {subset}
n_val = 200
seed = 0
trials = 4
concurrency = {concurrency}
scheduler = "none"
cpus_per_trial = 1

[space]
lr = {{ grid = {LRS} }}
""")
    return path


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def sweep(tmp: Path, subset: int, concurrency: int) -> float:
    runs = Path(tempfile.mkdtemp(dir=tmp))
    return timed([sys.executable, "-m", "tui.cli", "sweep", str(spec(runs / "s.toml", subset, concurrency)),
                  "--headless", "--runs-dir", str(runs)])


def sequential(tmp: Path, subset: int) -> float:
    runs = Path(tempfile.mkdtemp(dir=tmp))
    return sum(timed([sys.executable, "-m", "tui.cli", "train", "--headless", "--engine", "1", "--data", "sample",
                      "--noise", "mix", "--epochs", "1", "--subset", str(subset), "--n-val", "200", "--seed", "0",
                      "--lr", str(lr), "--runs-dir", str(runs)]) for lr in LRS)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--subset", type=int, default=1000)
    args = p.parse_args()
    print(f"load average before: {load_avg()}  cpus: {os.cpu_count()}  torch threads per trial: 1", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    s1, seq = [], []
    for r in range(args.rounds):
        for name in (("sweep", "seq") if r % 2 == 0 else ("seq", "sweep")):
            if name == "sweep":
                s1.append(sweep(tmp, args.subset, 1))
                print(f"  round {r + 1} sweep, concurrency 1: {s1[-1]:6.1f} s  (load {load_avg()})", flush=True)
            else:
                seq.append(sequential(tmp, args.subset))
                print(f"  round {r + 1} 4 headless runs:     {seq[-1]:6.1f} s  (load {load_avg()})", flush=True)
    ratio = statistics.median(a / b for a, b in zip(s1, seq))
    print(f"sweep (concurrency 1) / sequential headless: median {ratio:.3f} over {args.rounds} rounds "
          f"(sweep {statistics.median(s1):.1f} s, sequential {statistics.median(seq):.1f} s)")
    s2 = sweep(tmp, args.subset, 2)
    print(f"concurrency 2: 4 trials in {s2:.1f} s = {4 * 3600 / s2:.0f} trials per hour "
          f"(concurrency 1: {4 * 3600 / statistics.median(s1):.0f} per hour)")
    print(f"load average after: {load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
