"""Does watching a run cost training speed? The same engine-1 run, headless (a bare ``Trainer.run``) and inside the
dashboard (the real app, driven headless by Textual's ``run_test``), alternated; prints images/s and the ratio.

A third mode runs the bare trainer in a plain thread (``Trainer.start``), the way the dashboard runs it: on a CPU
box whose cores are oversubscribed, torch's OpenMP pool behaves differently in the main thread and in a worker
thread (seen on a loaded 2-core box: the main thread 1.5-4x slower at 2 threads, equal at ``--threads 1``), which
has nothing to do with the dashboard;
the app-vs-thread ratio isolates the dashboard's own cost.

    python benchmarks/bench_tui_throughput.py                      # defaults: 3000 pairs, 2 epochs, 3 rounds
    python benchmarks/bench_tui_throughput.py --subset 500 --epochs 1 --rounds 1   # a quick look
    python benchmarks/bench_tui_throughput.py --threads 1                          # a busy shared CPU

Throughput is measured from the trainer's own step events: images trained between the first and the last step,
over the wall time between them (so evaluations, which happen in both modes alike, are included, and data loading
and start-up are not). Also printed: the share of one core the UI's own thread used while the run trained, a
measure of the dashboard's cost that does not depend on how busy the machine is. Every mode records into a
sessions store, as ``n2n-tui train`` does, so the only difference is the dashboard. Target: app / headless >= 0.95.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import header, load_avg

from engine.config import RunConfig
from engine.data import load_data
from engine.trainer import Trainer
from sessions import Recorder, Store

MODES = {"headless": "headless (Trainer.run, main thread)", "thread": "headless (Trainer.start, a thread)",
         "app": "dashboard (Textual run_test)"}


class Meter:
    """A sink: the wall time and size of every step."""

    def __init__(self, batch: int) -> None:
        self.batch, self.times = batch, []

    def __call__(self, event) -> None:
        if event.kind == "step":
            self.times.append((time.perf_counter(), event.step))

    def img_per_s(self) -> float:
        (t0, s0), (t1, s1) = self.times[0], self.times[-1]
        return (s1 - s0) * self.batch / (t1 - t0)


def make(config: RunConfig, dataset, root: Path):
    store = Store(root)
    run_id = store.new_run(config)
    trainer = Trainer(config, run_id=run_id, run_dir=store.run_dir(run_id), dataset=dataset,
                      sinks=[Recorder(store, run_id)])
    meter = Meter(trainer.batch_size)
    trainer.add_sink(meter)
    return trainer, store, meter


def headless(config, dataset, root, threaded: bool = False) -> float:
    """A bare ``Trainer.run`` in this (the main) thread, as ``--headless`` runs it; or in a plain worker thread
    (``Trainer.start``), as the dashboard runs it, so that only the dashboard itself differs."""
    trainer, store, meter = make(config, dataset, root)
    if threaded:
        trainer.start()
        trainer.join()
    else:
        trainer.run()
    assert trainer.state == "finished", trainer.message
    store.close()
    return meter.img_per_s()


def in_app(config, dataset, root, size) -> tuple[float, int, float]:
    from tui.app import N2NApp
    from tui.screens.launcher import train_defaults

    trainer, store, meter = make(config, dataset, root)
    app = N2NApp(train_defaults(str(root)), store=store, trainer=trainer)

    async def go() -> tuple[int, float]:
        async with app.run_test(size=size) as pilot:
            wall, cpu = time.perf_counter(), time.thread_time()  # the UI's thread: the event loop runs here
            while trainer.state not in ("finished", "failed", "stopped") or not app.screen.worker.is_finished:
                await pilot.pause(0.1)
            ui_share = (time.thread_time() - cpu) / (time.perf_counter() - wall)
            app.screen.drain(force_plots=True)
            await pilot.pause(0.2)
            seen = app.screen.n_steps_seen
            await pilot.press("q")
        return seen, ui_share

    seen, ui_share = asyncio.run(go())
    assert trainer.state == "finished", trainer.message
    assert seen == trainer.total_steps, (seen, trainer.total_steps)  # the dashboard saw every step
    store.close()
    return meter.img_per_s(), seen, ui_share


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", type=int, default=3000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3, help="headless/app pairs, alternated")
    p.add_argument("--size", default="120x40", help="terminal size of the app, WxH")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    size = tuple(int(v) for v in a.size.split("x"))

    config = RunConfig(engine=1, data="sample", noise="mix", epochs=a.epochs, batch_size=a.batch_size,
                       subset=a.subset, n_val=a.n_val, seed=0, device=a.device)
    t = time.perf_counter()
    dataset = load_data(config.data, noise=config.noise, seed=config.seed, n_train=a.subset, n_val=a.n_val)
    print(f"data: {len(dataset)} pairs, {len(dataset.val_input)} validation ({time.perf_counter() - t:.1f}s); "
          f"engine 1, {a.epochs} epoch(s), app at {size[0]}x{size[1]}", flush=True)
    print(header(f"{a.rounds} rounds, modes rotated, medians"), flush=True)

    results: dict[str, list[float]] = {"headless": [], "thread": [], "app": []}
    ui = []
    order = list(results)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for mode in order[r % 3:] + order[:r % 3]:  # rotate the order: no mode always runs first
                root = Path(tmp) / f"{mode}{r}"
                if mode == "app":
                    ips, seen, ui_share = in_app(config, dataset, root, size)
                    ui.append(ui_share)
                    note = f"  ({seen} steps drawn, UI thread busy {100 * ui_share:.1f}% of one core)"
                else:
                    ips, note = headless(config, dataset, root, threaded=mode == "thread"), ""
                results[mode].append(ips)
                print(f"round {r + 1}  {MODES[mode]:<32} {ips:8.1f} img/s{note}", flush=True)
    med = {m: statistics.median(v) for m, v in results.items()}
    print("median img/s: " + ", ".join(f"{m} {v:.1f}" for m, v in med.items()))
    for base in ("headless", "thread"):
        ratio = med["app"] / med[base]
        print(f"ratio app / {MODES[base]}: {ratio:.3f} ({'meets' if ratio >= 0.95 else 'BELOW'} the 0.95 target)")
    print(f"UI thread busy {100 * statistics.median(ui):.1f}% of one core while training; load average now "
          f"{load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
