"""A Gaussian-specialised Miniproject_1 against BM3D on whole photographs (goal: the model beats BM3D).

    python benchmarks/bench_gaussian_vs_bm3d.py [--minutes 56] [--runs-dir runs] [--float-targets] [--fresh]
                                                [--widths 32,48,64,96] [--crop 64 --batch-size 16] [--self-ensemble]
                                                [--data sample+leaves] [--eval-on sample,pypi] [--eval-seed 0]
    python benchmarks/bench_gaussian_vs_bm3d.py --weights runs/<id>/best.pth    # only the evaluation

Training is an ordinary engine run (``Trainer``, recorded in the sessions store, so ``n2n-tui show`` / ``report`` see
it): engine 1, ``sample`` data (``--data``: any data spec) with ``gaussian:25`` noise, L2 loss (the paper's pairing for
zero-mean noise), stopped when the time budget is spent; the learning rate follows a cosine over that budget through the
trainer's live control (``set_lr``), as a person at the dashboard could do by hand; when the trainer's divergence guard
pauses the run (it rolled back already) the script halves the peak rate and resumes, as that person would. The
best-validation weights are then measured with exactly ``n2n-tui eval --engine 1 --weights best.pth --data images:DIR
--noise gaussian:25 --full --baseline bm3d`` on the held-out ``sample`` photographs (``SAMPLE_VAL``, whole, never seen
in training; copied to DIR, so taken in order of name), and with ``--eval-on sample,pypi`` also on the nine ``pypi``
photographs, a source no run trains on. The evaluation's noise is seeded by ``--eval-seed`` (0), not by the training
``--seed``, so runs of other seeds are measured on the same noisy photographs.

``--float-targets`` (formerly ``--unclipped-targets``) is ``train --float-targets``: targets clean + N(0, 25^2), not
rounded or clipped to [0, 255], as in the Noise2Noise paper (``bench_n2n_vs_n2c.py --unclipped`` measures why:
clipping biases the targets' mean near black and white); inputs stay uint8, as the test inputs are, and input/target
swaps are off. ``--fresh`` is ``train --fresh``: new noise on the training crops every epoch. ``--widths`` sets the
U-Net's channels per level (four levels see 58 px around a pixel, three 26). ``--self-ensemble`` evaluates with
``eval --self-ensemble`` (the mean over 8 rotations and mirror images); BM3D's side is the same either way.
"""
import argparse
import contextlib
import io
import json
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

from _common import load_avg

from engine.specs import CROP

NOISE = "gaussian:25"


def train(args) -> Path:
    from engine.config import RunConfig
    from engine.states import RunState
    from engine.trainer import Trainer
    from sessions import Recorder, Store

    cfg = RunConfig(engine=1, data=args.data, noise=NOISE, loss="l2", epochs=args.epochs, subset=args.n_train,
                    lr=args.lr, eval_every=args.eval_every, seed=args.seed, fresh=args.fresh,
                    float_targets=args.float_targets, crop=args.crop, batch_size=args.batch_size,
                    model={"widths": args.widths} if args.widths else None)
    store = Store(args.runs_dir)
    run_id = store.new_run(cfg)
    budget, t0 = args.minutes * 60, time.monotonic()
    trainer = Trainer(cfg, run_id=run_id, run_dir=store.run_dir(run_id), sinks=[Recorder(store, run_id)])

    peak = [args.lr]  # halved each time the divergence guard pauses the run (it rolled back already)

    def schedule(ev):  # cosine decay to 1% over the time budget, then stop
        if ev.kind == "control" and ev.action == "guard":
            peak[0] /= 2
            print(f"guard at step {ev.step}: {ev.detail}; resuming at half the peak lr ({peak[0]:.2e})", flush=True)
            threading.Thread(target=resume_when_paused, daemon=True).start()
        if ev.kind == "eval":
            print(f"step {ev.step:>6}  {(time.monotonic() - t0) / 60:5.1f} min  val PSNR {ev.psnr:.2f} dB "
                  f"(best {ev.best_psnr:.2f})  lr {trainer.lr:.2e}  load {load_avg()}", flush=True)
        if ev.kind != "step" or ev.step % 100:
            return
        f = (time.monotonic() - t0) / budget
        if f >= 1:
            trainer.stop(f"time budget of {args.minutes:g} min spent")
        else:
            trainer.set_lr(peak[0] * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * f))))

    def resume_when_paused():  # what a person at the dashboard does: a lower rate, then resume
        while trainer.state != RunState.PAUSED:
            time.sleep(0.1)
        trainer.set_lr(trainer.lr / 2)
        trainer.resume()

    trainer.add_sink(schedule)
    print(f"run {run_id}: {cfg.data} {cfg.noise}, loss {cfg.loss}, {args.n_train} pairs"
          f"{' (float targets)' if args.float_targets else ''}"
          f"{', fresh noise every epoch' if args.fresh else ''}, {args.crop} px crops, batch {trainer.batch_size}, "
          f"budget {args.minutes:g} min, "
          f"load {load_avg()}", flush=True)
    state = trainer.run()
    store.close()
    minutes = (time.monotonic() - t0) / 60
    rate = trainer.step * trainer.batch_size / 60 / minutes
    print(f"{state} after {minutes:.1f} min, step {trainer.step} ({rate:.0f} img/s); "
          f"best val PSNR {trainer.best_psnr:.2f} dB at step {trainer.best_step} "
          f"(noisy crops {trainer.psnr_noisy:.2f} dB)", flush=True)
    return trainer.run_dir / "best.pth"


def evaluate(weights: Path, spec: str, seed: int, self_ensemble: bool = False) -> dict:
    from engine.data import SAMPLE_VAL, sample_dir
    from tui.cli import main

    folder = None
    if spec == "sample":  # a folder of SAMPLE_VAL's copies: sorted by name, so each photo gets the noise of the table's
        folder = Path(tempfile.mkdtemp(prefix="n2n-heldout-"))  # runs (eval seeds each photo by its place)
        for name in SAMPLE_VAL:
            shutil.copy(sample_dir() / name, folder / name)
    try:
        argv = ["eval", "--engine", "1", "--weights", str(weights), "--data", f"images:{folder}" if folder else spec,
                "--noise", NOISE, "--full", "--baseline", "bm3d", "--seed", str(seed)]
        argv += ["--self-ensemble"] if self_ensemble else []
        shown = " ".join(argv)
        print("n2n-tui " + (shown.replace(str(folder), "<SAMPLE_VAL photos>") if folder else shown), flush=True)
        t0 = time.monotonic()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(argv + ["--json"])
        if status:
            raise SystemExit(f"eval failed with status {status}")
        r = json.loads(out.getvalue())
        for im in r["images"]:
            print(f"  {im['name']:<16} noisy {im['psnr_noisy']:6.2f}  BM3D {im['psnr_bm3d']:6.2f}  "
                  f"model {im['psnr']:6.2f} dB")
        print(f"evaluation {time.monotonic() - t0:.0f} s, load {load_avg()}")
        return r
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="sample", help="training data spec (default: sample)")
    p.add_argument("--eval-on", default="sample", help="photos measured, comma-separated: sample and/or pypi")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation's noise")
    p.add_argument("--minutes", type=float, default=56, help="training budget (the issue allows at most 60)")
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--epochs", type=int, default=100, help="an upper bound: the time budget ends the run")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--widths", type=lambda v: [int(w) for w in v.split(",")], default=None,
                   help="the U-Net's channels per level, e.g. 32,48,64,96 (default: the Model's own, 32,48,64)")
    p.add_argument("--weights", default=None, help="skip training: evaluate these weights")
    p.add_argument("--float-targets", "--unclipped-targets", action="store_true",
                   help="float targets, not rounded or clipped: train --float-targets (see above)")
    p.add_argument("--crop", type=int, default=CROP, help="training crop side (train --crop; validation stays 32)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the Model's own (32)")
    p.add_argument("--self-ensemble", action="store_true", help="evaluate with eval --self-ensemble")
    p.add_argument("--fresh", action="store_true", help="new noise on the training crops every epoch (train --fresh)")
    args = p.parse_args()
    weights = Path(args.weights) if args.weights else train(args)
    how = f"{NOISE}{', self-ensemble' if args.self_ensemble else ''}"
    for spec in args.eval_on.split(","):
        r = evaluate(weights, spec, args.eval_seed, args.self_ensemble)
        print(f"{spec} held-out photos, {how}: noisy {r['psnr_noisy']:.2f} dB, BM3D {r['psnr_bm3d']:.2f} dB, "
              f"model {r['psnr']:.2f} dB, gap model - BM3D {r['psnr'] - r['psnr_bm3d']:+.2f} dB; load {load_avg()}",
              flush=True)


if __name__ == "__main__":
    main()
