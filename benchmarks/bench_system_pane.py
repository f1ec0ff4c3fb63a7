"""What do the system pane and the log tail cost training? The same engine-1 run, headless, with the system monitor
sampling every 5 s (the default) and with it off (N2N_SYSTEM_SECONDS=0), and detached with one dashboard attached
showing the run's log (the ``v`` pane, tailed every second) against one showing the event log; interleaved rounds,
images/s from the run's own running -> finished events in the store. Target: at most 1% apart.

    python benchmarks/bench_system_pane.py [--rounds 3] [--steps 300]
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

from _common import load_avg, tests_module
from bench_runner_viewers import train_args, wait_finished, wall_of

from sessions import Store

Terminal = tests_module("terminal").Terminal  # the test suite's pseudo-terminal


def env(system: bool) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", N2N_SYSTEM_SECONDS="5" if system else "0")
    e.pop("N2N_RUNS_DIR", None)
    return e


def headless(root: Path, steps: int, system: bool) -> float:
    runs = Path(tempfile.mkdtemp(dir=root))
    subprocess.run([sys.executable, "-m", "tui.cli", "train", "--headless", *train_args(32, steps, "cpu"),
                    "--runs-dir", str(runs)], env=env(system), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    with Store(runs, create=False, readonly=True) as s:
        run = s.list_runs()[-1]["id"]
    return steps * 32 / wall_of(runs, run)


def watched(root: Path, steps: int, log_pane: bool) -> float:
    runs = Path(tempfile.mkdtemp(dir=root))
    out = subprocess.run([sys.executable, "-m", "tui.cli", "train", "--detach", *train_args(32, steps, "cpu"),
                          "--runs-dir", str(runs)], env=env(True), check=True, capture_output=True, text=True)
    run = out.stdout.strip()
    term = Terminal("attach", run, "--runs-dir", str(runs), env={"OMP_NUM_THREADS": "1"})
    try:
        if log_pane:
            time.sleep(3)
            term.send("v")
        wait_finished(runs, run)
    finally:
        term.close()
    return steps * 32 / wall_of(runs, run)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    print(f"load average before: {load_avg()}  torch threads: 1  cpus: {os.cpu_count()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-system-"))
    modes = {"headless, monitor on": lambda: headless(root, args.steps, True),
             "headless, monitor off": lambda: headless(root, args.steps, False),
             "attached, log pane": lambda: watched(root, args.steps, True),
             "attached, event log": lambda: watched(root, args.steps, False)}
    speeds = {m: [] for m in modes}
    for r in range(args.rounds):
        for m in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            speeds[m].append(modes[m]())
            print(f"  round {r + 1} {m:<22} {speeds[m][-1]:7.1f} img/s  (load {load_avg()})", flush=True)
    med = {m: statistics.median(v) for m, v in speeds.items()}
    for m in modes:
        print(f"{m:<22} {med[m]:7.1f} img/s")
    print(f"system monitor on / off: {med['headless, monitor on'] / med['headless, monitor off']:.3f}; "
          f"log pane / event log (attached): {med['attached, log pane'] / med['attached, event log']:.3f}")
    print(f"load average after: {load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
