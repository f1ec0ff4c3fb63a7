"""Population-based training against ASHA against the defaults, on this machine: three sweeps with the same data,
the same trial count, the same training budget per trial and the same resources, each a real ``n2n-tui sweep``.

- defaults: the Model's default settings, the trials differing only in their seed (what you get without a search);
- asha: a random search over the learning rate and the batch size, ASHA stopping the worst trials early;
- pbt: the same search space as a population that exploits and explores as it trains.

Printed: for each, the best validation PSNR (the sweep's winner, measured by the trainer on the same held-out
pairs), the wall time (Ray's start-up included), the trials finished or early-stopped, and PBT's exploits; the load
average before and after each sweep.

    python benchmarks/compare_schedulers.py                       # 4 trials, 4 at a time, 2 epochs of 2000 pairs
    python benchmarks/compare_schedulers.py --trials 8 --epochs 3 --only pbt
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_avg

SPACE = {
    "defaults": "seed = { grid = [%s] }",
    "asha": 'lr = { loguniform = [2e-4, 2e-2] }\nbatch_size = { choice = [16, 32, 64] }',
    "pbt": 'lr = { loguniform = [2e-4, 2e-2] }\nbatch_size = { choice = [16, 32, 64] }',
}


def spec_text(kind: str, a) -> str:
    space = SPACE[kind] % ", ".join(str(i) for i in range(a.trials)) if kind == "defaults" else SPACE[kind]
    scheduler = {"defaults": "none", "asha": "asha", "pbt": "pbt"}[kind]
    extra = f"perturbation_interval = {a.interval}\n" if kind == "pbt" else ""
    return f"""engine = 1
data = "sample"
noise = "{a.noise}"
epochs = {a.epochs}
subset = {a.subset}
n_val = {a.n_val}
eval_every = {a.eval_every}
threads = 1
trials = {a.trials}
concurrency = {a.concurrency}
cpus_per_trial = {2 / a.concurrency:g}
scheduler = "{scheduler}"
{extra}
[space]
{space}
"""


def run(kind: str, a, tmp: Path) -> dict:
    spec = tmp / f"{kind}.toml"
    spec.write_text(spec_text(kind, a))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    before = load_avg()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tui.cli", "sweep", str(spec), "--json", "--runs-dir",
                        str(tmp / f"runs-{kind}")], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{kind}: the sweep failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    end = next(e for e in events if e["event"] == "sweep_end")
    ends = [e for e in events if e["event"] == "trial_end"]
    best = end["best"] or {}
    return {"kind": kind, "best": best.get("best_psnr"), "params": best.get("params"), "wall": wall,
            "finished": sum(e["state"] == "finished" for e in ends), "stopped": sum(e["early_stopped"] for e in ends),
            "exploits": sum(e["event"] == "exploit" for e in events), "load": f"{before} -> {load_avg()}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--interval", type=int, default=2, help="PBT: evaluations between perturbations")
    p.add_argument("--noise", default="mix")
    p.add_argument("--only", choices=sorted(SPACE), action="append")
    a = p.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {load_avg()}; engine 1, data sample, noise {a.noise}, {a.trials} "
          f"trials, {a.concurrency} at a time, {a.epochs} epochs of {a.subset} pairs, evaluation every "
          f"{a.eval_every} steps on {a.n_val} pairs, 1 torch thread a trial", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind in a.only or ["defaults", "asha", "pbt"]:
            rows.append(run(kind, a, Path(d)))
            r = rows[-1]
            print(f"{kind}: best {r['best']} dB {r['params']}, {r['wall']:.0f} s, load {r['load']}", flush=True)
    print("\n| search | best PSNR (dB) | best trial's settings | wall time | finished / early-stopped | exploits | "
          "load average |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        best = f"{r['best']:.2f}" if r["best"] is not None else "none"
        print(f"| {r['kind']} | {best} | {json.dumps(r['params'])} | {r['wall']:.0f} s | {r['finished']} / "
              f"{r['stopped']} | {r['exploits']} | {r['load']} |")


if __name__ == "__main__":
    main()
