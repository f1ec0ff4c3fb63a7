"""Threads on a shared machine: images/s of real headless runs (``n2n-tui train --headless --json``) of engine 1 and
engine 2 with ``--threads 1``, ``--threads N`` (all CPUs: torch's own default, what every run used before
``--threads`` existed) and ``--threads auto``, on a quiet machine and with competing busy processes (``yes``).

Each measurement is one run of ``--seconds`` seconds; its speed is the images of the steps in its second half over
the wall time between them (evaluations are off: one epoch of ``--subset`` pairs outlasts the window), so it
includes whatever the governor costs and whatever its probes lose. The settings take turns, in an order rotated
from round to round; the median over ``--rounds`` rounds is reported, with the load average around each condition.
``auto``'s thread changes (the run's ``threads`` events) are counted: on a quiet machine there should be none.

    python benchmarks/bench_threads.py                       # both engines, quiet and 1 busy process, 3 rounds
    python benchmarks/bench_threads.py --engines 1 --busy 1 --rounds 5 --seconds 40

Targets (issue 21): auto >= 0.9x the best fixed setting in every condition; with one busy process, auto >= 2.5x
the old default (all CPUs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_avg, wait_quiet

ROOT = Path(__file__).resolve().parent.parent


def one_run(engine: int, threads: str, seconds: float, subset: int, runs_dir: str) -> tuple[float, int, list]:
    """(steps/s over the second half, thread changes, the thread counts it used in turn) of one headless run."""
    cmd = [sys.executable, "-m", "tui.cli", "--runs-dir", runs_dir, "train", "--json", "--engine", str(engine),
           "--data", "sample", "--noise", "gaussian", "--subset", str(subset), "--n-val", "16", "--epochs", "1",
           "--threads", threads]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "N2N_THREADS")}
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    steps, changes, counts, t0 = [], 0, [], None
    try:
        for line in p.stdout:
            ev = json.loads(line)
            now = time.monotonic()
            if ev["event"] == "control" and ev.get("action") == "threads":
                counts.append(int(ev["value"]))
                changes += len(counts) > 1
            elif ev["event"] == "step":
                if t0 is None:
                    t0 = now
                steps.append((now, ev["step"]))
                if now - t0 >= seconds:
                    break
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    half = [s for s in steps if s[0] - t0 >= seconds / 2]
    if len(half) < 2:
        raise RuntimeError(f"engine {engine}, threads {threads}: too few steps in {seconds} s")
    return (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0]), changes, counts


def batch_size(engine: int) -> int:
    if engine == 1:
        from Miniproject_1.model import Model
    else:
        from Miniproject_2.model import Model
    return Model().batch_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="1,2")
    ap.add_argument("--busy", default="0,1", help="competing busy processes, one condition each (default 0,1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of one run's measured window")
    ap.add_argument("--subset", type=int, default=20000)
    args = ap.parse_args()
    ncpu = len(os.sched_getaffinity(0))
    settings = ["1", str(ncpu), "auto"] if ncpu > 1 else ["1", "auto"]
    print(f"{ncpu} CPUs; settings {', '.join(settings)}; {args.rounds} rounds of {args.seconds:.0f} s runs",
          flush=True)
    wait_quiet(1.0, timeout=300)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as runs:
        for engine in (int(e) for e in args.engines.split(",")):
            bs = batch_size(engine)
            for busy in (int(b) for b in args.busy.split(",")):
                hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(busy)]
                load_before = load_avg()
                speeds = {s: [] for s in settings}
                changes = {s: [] for s in settings}
                finals = {s: [] for s in settings}
                try:
                    time.sleep(2 if busy else 0)
                    for r in range(args.rounds):
                        order = settings[r % len(settings):] + settings[:r % len(settings)]
                        for s in order:
                            steps_per_s, ch, counts = one_run(engine, s, args.seconds, args.subset, runs)
                            speeds[s].append(steps_per_s * bs)
                            changes[s].append(ch)
                            finals[s].append(counts[-1] if counts else None)
                            print(f"  engine {engine}, {busy} busy, round {r + 1}, --threads {s:>4}: "
                                  f"{steps_per_s * bs:7.1f} img/s, thread counts {counts}", flush=True)
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                med = {s: statistics.median(v) for s, v in speeds.items()}
                best_fixed = max(v for s, v in med.items() if s != "auto")
                line = (f"engine {engine}, {busy} busy process{'es' if busy != 1 else ''} (load {load_before} -> "
                        f"{load_avg()}): " + ", ".join(f"{s} {med[s]:.0f}" for s in settings) + " img/s; "
                        f"auto/best fixed {med['auto'] / best_fixed:.2f}")
                if ncpu > 1:
                    line += f", auto/old default ({ncpu} threads) {med['auto'] / med[str(ncpu)]:.2f}"
                line += f"; auto's thread changes per run {changes['auto']}"
                results.append(line)
                print(line, flush=True)
                if busy == 0:
                    wait_quiet(1.0, timeout=120)
    print("\nsummary (medians):")
    for line in results:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
