"""Do viewers cost a run training speed? The same engine-1 run as a headless runner (``train --headless``, no
viewer) and detached (``train --detach``) with 0, 1 and 3 dashboards attached (real ``n2n-tui attach`` processes on
pseudo-terminals, 80x24), interleaved over rounds; prints images/s and each mode's ratio to headless (target >= 0.97).
Then the time from ``attach`` to a full first frame of a run with a 10 000-step history (target <= 1 s).

    python benchmarks/bench_runner_viewers.py                     # default batch (32) and batch 4, 3 rounds
    python benchmarks/bench_runner_viewers.py --rounds 1 --steps 200    # a quick look
    python benchmarks/bench_runner_viewers.py --device cuda            # on a GPU box

Throughput: images trained over the wall time between the run's ``running`` and ``finished`` events in the store
(the data is loaded before ``running``; the two evaluations of 16 images at step 0 and at the end are the same in
every mode). The runner trains with ``--threads`` torch threads (OMP_NUM_THREADS, default 1) so that on a small
machine the dashboards have a core of their own; say so when quoting the numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_avg, tests_module

from sessions.store import RunBatch, Store

Terminal = tests_module("terminal").Terminal  # the test suite's pseudo-terminal

MODES = ("headless", "detached+0", "detached+1", "detached+3")


def env(threads: int) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    e.pop("N2N_RUNS_DIR", None)
    return e


def train_args(batch: int, steps: int, device: str) -> list[str]:
    """``steps`` steps of ``batch``: 10 epochs over 1/10 of the pairs when that divides (generating the pairs is most
    of a run's start-up, and the start-up is not timed), else one epoch."""
    epochs = 10 if steps % 10 == 0 else 1
    return ["--engine", "1", "--data", "sample", "--noise", "poisson", "--subset", str(batch * steps // epochs),
            "--batch-size", str(batch), "--epochs", str(epochs), "--n-val", "16", "--eval-every", "0", "--seed", "0",
            "--device", device]


def wall_of(runs: Path, run_id: str) -> float:
    with Store(runs, create=False, readonly=True) as s:
        events = s.get_run(run_id)["events"]
    t = {e["detail"]: e["time"] for e in events if e["kind"] == "state"}
    return t["finished"] - t["running"]


def wait_finished(runs: Path, run_id: str, timeout: float = 1800) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Store(runs, create=False, readonly=True) as s:
            r = s.get_run(run_id, metrics=False, events=False)
        if r["state"] == "finished":
            return
        if r["state"] not in ("running", "paused"):
            raise RuntimeError(f"run {run_id} ended {r['state']}: {r['message']}")
        time.sleep(0.2)
    raise TimeoutError(run_id)


def one(mode: str, batch: int, steps: int, device: str, threads: int, root: Path) -> float:
    runs = Path(tempfile.mkdtemp(dir=root))
    cli = [sys.executable, "-m", "tui.cli"]
    args = train_args(batch, steps, device) + ["--runs-dir", str(runs)]
    if mode == "headless":
        subprocess.run(cli + ["train", "--headless", *args], env=env(threads), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Store(runs, create=False, readonly=True) as s:
            run_id = s.list_runs()[-1]["id"]
    else:
        out = subprocess.run(cli + ["train", "--detach", *args], env=env(threads), check=True,
                             capture_output=True, text=True)
        run_id = out.stdout.strip()
        viewers = [Terminal("attach", run_id, "--runs-dir", str(runs), env={"OMP_NUM_THREADS": "1"})
                   for _ in range(int(mode.split("+")[1]))]
        try:
            wait_finished(runs, run_id)
        finally:
            for v in viewers:
                v.close()
    steps_done = steps
    return steps_done * batch / wall_of(runs, run_id)


def attach_frame_time(root: Path, history: int = 10000) -> tuple[float, float]:
    """(in-process: connect + backfill + first frame, as a new process: exec to the first frame on a terminal)."""
    from engine.config import RunConfig
    from sessions.launch import spawn
    from sessions.remote import RemoteRun

    runs = Path(tempfile.mkdtemp(dir=root))
    cfg = RunConfig(engine=1, data="sample", noise="poisson", epochs=1000, batch_size=4, subset=64, n_val=16)
    started = spawn(runs, cfg)
    run_id = started["run"]
    try:
        with Store(runs) as s:  # the run's history: what 10 000 steps and 100 evaluations leave in the store
            s.write_batch(run_id, RunBatch(
                steps=[(run_id, i, 1, 0.1 * (1 + 1 / i), 1e-3, 1000.0) for i in range(1, history + 1)],
                evals=[(run_id, i, 1, 20 + i / history) for i in range(100, history + 1, 100)]))
        handle = RemoteRun(runs / run_id)
        handle.pause()
        handle.close()

        from fakes import train_args as fake_args

        from sessions.launch import attach_run
        from tui.app import N2NApp
        from tui.widgets import LossPlot

        async def frame() -> float:
            t0 = time.perf_counter()
            h, store = attach_run(runs, run_id)
            app = N2NApp(fake_args(runs_dir=str(runs)), store=store, trainer=h)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                plot = app.screen.query_one(LossPlot)
                assert plot.n_points >= history
                took = time.perf_counter() - t0
                await pilot.press("q", "d")
            return took

        in_process = asyncio.run(frame())
        t0 = time.perf_counter()
        term = Terminal("attach", run_id, "--runs-dir", str(runs))
        try:
            ok = term.expect(f"{history // 1000}k", timeout=30)  # the loss plot's last step tick: drawn
            whole = time.perf_counter() - t0 if ok else float("nan")
        finally:
            term.close()
        return in_process, whole
    finally:
        subprocess.run([sys.executable, "-m", "tui.cli", "ctl", run_id, "stop", "--runs-dir", str(runs)],
                       capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="steps per run at batch 32 (batch 4 runs 8x as many)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="32,4")
    args = p.parse_args()
    print(f"load average before: {load_avg()}  torch threads (runner): {args.threads}  device: {args.device}  "
          f"cpus: {os.cpu_count()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    results = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        steps = args.steps * 32 // batch
        speeds = {m: [] for m in MODES}
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))  # interleaved, alternating order
            for mode in order:
                v = one(mode, batch, steps, args.device, args.threads, root)
                speeds[mode].append(v)
                print(f"  batch {batch:>2} round {r + 1} {mode:<11} {v:8.1f} img/s  (load {load_avg()})", flush=True)
        base = statistics.median(speeds["headless"])
        print(f"batch {batch} ({steps} steps of {batch}), median of {args.rounds}:")
        for mode in MODES:
            med = statistics.median(speeds[mode])
            ratios = [a / b for a, b in zip(speeds[mode], speeds["headless"])]
            print(f"  {mode:<11} {med:8.1f} img/s   / headless {med / base:.3f}   (per round: "
                  f"{', '.join(f'{x:.3f}' for x in ratios)})")
            results[f"{batch}/{mode}"] = med / base
    in_process, whole = attach_frame_time(root)
    print(f"attach to a full first frame, 10 000-step history: {in_process:.2f} s in process (connect, backfill, "
          f"draw); {whole:.2f} s as a new n2n-tui attach process on a terminal (Python start-up included)")
    print(f"load average after: {load_avg()}")
    print(json.dumps({"ratios": results, "attach_s": in_process, "attach_process_s": whole}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
