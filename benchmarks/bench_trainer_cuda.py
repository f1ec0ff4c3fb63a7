"""The trainer on a GPU: correctness checks and the overhead ratio there (where steps are short, so the trainer's
per-step work weighs most).

1. Each engine on the device: a run finishes with rising PSNR; a run stopped mid-epoch and resumed continues with the
   losses of the uninterrupted run (up to GPU float non-determinism: the largest relative difference is printed);
   the GPU's full state also resumes on the CPU.
2. Export of a GPU run: a fresh ``Model()`` reloads ``bestmodel.pth`` and re-measures the recorded PSNR.
3. Throughput: trainer (evaluations, checkpoints, events, a JSON sink, the store's recorder) vs a bare loop over
   ``train_step``, interleaved, the medians compared.

    python benchmarks/bench_trainer_cuda.py [--device cuda] [--steps 2000] [--batch 32]
"""
import argparse
import io
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import load, load_avg

from engine.config import RunConfig
from engine.headless import JsonLines
from engine.models import new_model
from engine.trainer import Trainer
from sessions import Recorder, Store
from sessions.export import export_run

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--n-val", type=int, default=1000)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--epochs", type=int, default=1, help="the steps are split into this many epochs (an eval at each end)")
p.add_argument("--engines", default="1,2")
args = p.parse_args()
dev = args.device
name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
print(f"device {dev} ({name}), torch {torch.__version__}, load average {load_avg()}")
engines = [int(e) for e in args.engines.split(",")]

small = load("poisson", 512, 256)
ok = True


def check(cond, what):
    global ok
    ok &= bool(cond)
    print(f"  [{'ok' if cond else 'FAIL'}] {what}")


# --------------------------------------------------------------------------------------------- 1. correctness
for engine in engines:
    print(f"engine {engine}:")
    cfg = RunConfig(engine=engine, data="sample", noise="poisson", epochs=2, batch_size=32, lr=3e-3, subset=512,
                    n_val=256, eval_every=8, device=dev)
    with tempfile.TemporaryDirectory() as d:
        losses_a, evals = [], []
        a = Trainer(cfg, run_dir=Path(d) / "a", dataset=small,
                    sinks=[lambda e: losses_a.append(e.loss) if e.kind == "step" else
                           evals.append(e.psnr) if e.kind == "eval" else None])
        t0 = time.perf_counter()
        check(a.run() == "finished", f"straight run finished ({time.perf_counter() - t0:.1f} s, {a.step} steps, "
                                     f"{a.img_per_s:,.0f} img/s)")
        losses_a2 = []  # the same run again: how far two identical runs drift apart on this device
        Trainer(cfg, run_dir=Path(d) / "a2", dataset=small,
                sinks=[lambda e: losses_a2.append(e.loss) if e.kind == "step" else None]).run()
        floor = max(abs(x - y) / abs(y) for x, y in zip(losses_a2, losses_a))
        check(evals[-1] > evals[0] + 1.0, f"PSNR rose: {evals[0]:.2f} -> {evals[-1]:.2f} dB")
        b = Trainer(cfg, run_dir=Path(d) / "b", dataset=small)
        b.add_sink(lambda e: b.stop() if e.kind == "step" and e.step == 21 else None)
        b.run()
        losses_c = []
        c = Trainer(cfg, run_dir=Path(d) / "b", dataset=small, resume_from=Path(d) / "b",
                    sinks=[lambda e: losses_c.append(e.loss) if e.kind == "step" else None])
        check(c.run() == "finished" and c.step == 32, "stopped at step 21 and resumed on the device to step 32")
        diff = max(abs(x - y) / abs(y) for x, y in zip(losses_c, losses_a[21:]))
        check(diff <= max(1e-4, 3 * floor), f"resumed losses follow the uninterrupted run (max relative difference "
                                            f"{diff:.2e}; two identical straight runs differ by up to {floor:.2e})")
        cpu_cfg = RunConfig(**{**cfg.to_dict(), "device": "cpu"})
        b2 = Trainer(cfg, run_dir=Path(d) / "b2", dataset=small)
        b2.add_sink(lambda e: b2.stop() if e.kind == "step" and e.step == 21 else None)
        b2.run()
        c2 = Trainer(cpu_cfg, run_dir=Path(d) / "b2", dataset=small, resume_from=Path(d) / "b2")
        check(c2.run() == "finished" and c2.step == 32, "a device state resumes on the CPU")

        store = Store(Path(d) / "runs")
        run_id = store.new_run(cfg)
        t = Trainer(cfg, run_id=run_id, run_dir=store.run_dir(run_id), dataset=small, sinks=[Recorder(store, run_id)])
        t.run()
        r = export_run(store, run_id, Path(d) / "bestmodel.pth")
        check(abs(r["psnr"] - r["recorded_psnr"]) <= 0.01,
              f"export verified in a fresh Model(): {r['psnr']:.4f} dB re-measured vs {r['recorded_psnr']:.4f} "
              f"recorded")
        store.close()

# ----------------------------------------------------------------------------------------------- 2. overhead
n = args.steps * args.batch // args.epochs
imgs = args.steps * args.batch
big = load("mix", min(n, 8192), args.n_val)  # timing only: the crops are tiled to n pairs
reps = math.ceil(n / len(big.train_input))
big.train_input = big.train_input.repeat(reps, 1, 1, 1)[:n]
big.train_target = big.train_target.repeat(reps, 1, 1, 1)[:n]
for engine in engines:
    cfg = RunConfig(engine=engine, data="sample", noise="mix", epochs=args.epochs, batch_size=args.batch, subset=n,
                    n_val=args.n_val, eval_every=0, device=dev)

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    def bare() -> float:
        torch.manual_seed(0)
        m = new_model(engine, dev)
        m.batch_size = args.batch
        x, y = big.train_input.to(dev), big.train_target.to(dev)  # the trainer keeps the data on the device too
        spe = math.ceil(n / args.batch)
        sync()
        t0 = time.perf_counter()
        for i in range(args.steps):
            e, j = divmod(i, spe)
            if j == 0:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(e)).to(dev)
            idx = order[j * args.batch:(j + 1) * args.batch]
            m.train_step(x[idx], y[idx])
        sync()
        return time.perf_counter() - t0

    def trainer() -> float:
        with tempfile.TemporaryDirectory() as d:
            store = Store(d)
            run_id = store.new_run(cfg)
            t = Trainer(cfg, run_id=run_id, run_dir=store.run_dir(run_id), dataset=big,
                        sinks=[Recorder(store, run_id), JsonLines(io.StringIO())])
            t.prepare()
            sync()
            t0 = time.perf_counter()
            t.run()
            sync()
            took = time.perf_counter() - t0
            store.close()
            return took

    bare()  # warm-up (cuDNN autotuning, allocator)
    tb, tt = [], []
    for _ in range(args.repeats):
        tb.append(bare())
        tt.append(trainer())
    tb_med, tt_med = statistics.median(tb), statistics.median(tt)   # medians of interleaved repeats
    ratio = tb_med / tt_med
    print(f"engine {engine} on {dev}, {args.steps} steps of batch {args.batch} in {args.epochs} epoch(s), eval of "
          f"{args.n_val} images at step 0 and each epoch end: bare {tb_med:.2f} s ({imgs / tb_med:,.0f} img/s), "
          f"trainer+store {tt_med:.2f} s ({imgs / tt_med:,.0f} img/s): throughput ratio {ratio:.3f} "
          f"(required >= 0.95)")
print(f"load average now {load_avg()}")
print("all checks passed" if ok else "SOME CHECKS FAILED")
raise SystemExit(0 if ok else 1)
