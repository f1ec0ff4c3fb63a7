"""The training loop behind scripts/train_mp1.py and scripts/train_mp2.py: the shipped bestmodel.pth files.

Data: ``--n-train`` `sample` crops (each cut, flipped and corrupted twice, independently), seen ``--epochs`` times;
``--renoise`` draws new noise for them in a thread while training runs, and every epoch that starts after a draw
is ready trains on it (a slow CPU run gets new noise every epoch; a GPU run that outpaces the noise thread repeats
the last draw rather than wait).

Schedule: Adam at ``--lr`` after a linear warm-up over the first ``--warmup`` of the run, then a cosine decay to 1%
of it. The run's progress is steps done / total steps or, with ``--minutes``, elapsed training time / budget when
that is further along: a run that would overrun its wall-clock budget compresses its schedule and still ends with
a fully decayed rate instead of being cut off at full speed.

The validation PSNR is measured ``--evals`` times, evenly over the run, exactly as the course grader does (predict
on batches of 100, mean per-image PSNR); the best weights are written atomically (Model.save) and at the end the
file is reloaded into a fresh Model() and measured again. ``--curve FILE`` writes every evaluation as a JSON line.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import load_data  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.models import bestmodel_path, model_module  # noqa: E402
from engine.noise import corrupt  # noqa: E402


def lr_at(progress: float, lr: float, warmup: float, floor: float = 0.01) -> float:
    """Linear warm-up from ``floor * lr`` to ``lr`` over the first ``warmup`` of the run, then cosine back down to
    ``floor * lr`` at progress 1."""
    if progress < warmup:
        return lr * (floor + (1.0 - floor) * progress / warmup)
    t = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def _describe(model) -> str:
    net = model.net
    n = sum(p.numel() for p in net.parameters()) if hasattr(net, "parameters") else sum(p.numel() for p, _ in net.param())
    return f"device {model.device}, config {model.config}, {n} parameters"


def _parser(engine: int, description: str, defaults: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="sample")
    p.add_argument("--noise", default="mix")
    p.add_argument("--n-train", type=int, default=defaults["n_train"], help="training pairs (sample crops)")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=defaults["epochs"])
    p.add_argument("--renoise", action=argparse.BooleanOptionalAction, default=defaults["renoise"],
                   help="new noise for the training pairs every epoch")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--lr", type=float, default=defaults["lr"], help="peak rate, after the warm-up")
    p.add_argument("--warmup", type=float, default=0.02, help="fraction of the run spent warming up the rate")
    p.add_argument("--minutes", type=float, default=0, help="wall-clock budget of the training loop (0: none)")
    p.add_argument("--evals", type=int, default=defaults["evals"], help="validations over the run (the last at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: the Model's own choice)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(bestmodel_path(engine)))
    p.add_argument("--curve", default=None, help="append every evaluation to this file as a JSON line")
    if engine == 1:
        p.add_argument("--widths", default=defaults["widths"], help="U-Net widths per level, e.g. 32,48,64")
    else:
        for key in ("c1", "c2", "c3", "k"):
            p.add_argument(f"--{key}", type=int, default=defaults[key])
    p.add_argument("--loss", default="l1", choices=("l1", "l2"))
    return p


def _new_model(engine: int, args, device):
    Model = model_module(engine).Model
    kw = {} if device is None else {"device": device}
    if engine == 1:
        return Model(widths=tuple(int(w) for w in str(args.widths).split(",")), loss=args.loss, lr=args.lr,
                     batch_size=args.batch_size, **kw)
    return Model(lr=args.lr, batch_size=args.batch_size, c1=args.c1, c2=args.c2, c3=args.c3, k=args.k,
                 loss=args.loss, **kw)


def main(engine: int, description: str, defaults: dict) -> int:
    p = _parser(engine, description, defaults)
    args = p.parse_args()
    if args.epochs < 1 or args.n_train < 1 or args.n_val < 1 or not args.lr > 0 or args.batch_size < 1 \
            or not 0 <= args.warmup < 1 or args.evals < 1 or args.minutes < 0:
        p.error("epochs, n-train, n-val, batch-size, evals must be >= 1, lr > 0, 0 <= warmup < 1, minutes >= 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    if engine == 2:
        torch.set_grad_enabled(False)  # the framework computes its own gradients
    torch.manual_seed(args.seed)
    t0 = time.time()
    ds = load_data(args.data, noise=args.noise, seed=args.seed, n_train=args.n_train, n_val=args.n_val)
    if args.renoise and ds.train_clean is None:
        p.error(f"--renoise needs a generated data source (sample, images:DIR), not {args.data}")
    print(f"data: {ds.source} {ds.noise}: {len(ds)} training pairs, {len(ds.val_input)} validation "
          f"({time.time() - t0:.0f} s)", flush=True)

    model = _new_model(engine, args, args.device)
    dev = model.device
    n, bs = len(ds), model.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * args.epochs
    print(f"{_describe(model)}, batch {bs}, {args.epochs} epoch(s) of {n} pairs = {total} steps, lr {args.lr:g} "
          f"(warm-up {args.warmup:g}, cosine), renoise {'on' if args.renoise else 'off'}, "
          f"budget {f'{args.minutes:g} min' if args.minutes else 'none'}, torch threads {torch.get_num_threads()}",
          flush=True)
    base = evaluate(model, ds.val_input, ds.val_target)
    print(f"noisy input: val PSNR {base['psnr_noisy']:.2f} dB", flush=True)

    def prepare(draw: int) -> dict:
        """Start drawing noise set ``draw`` (both noisy versions of every training crop) in a thread."""
        box: dict = {}

        def work():
            g = torch.Generator().manual_seed(args.seed * 1_000_003 + draw)
            a, b = corrupt(ds.train_clean, ds.noise, g), corrupt(ds.train_clean, ds.noise, g)
            box["pairs"] = (a.to(dev), b.to(dev))
        box["thread"] = threading.Thread(target=work, daemon=True)
        box["thread"].start()
        return box

    best, step, seen, t_train, evals_done, draws = -math.inf, 0, 0, time.time(), 0, 0
    curve = open(args.curve, "a") if args.curve else None
    progress, losses = 0.0, []
    x_all, y_all = ds.train_input.to(dev), ds.train_target.to(dev)
    nxt = prepare(1) if args.renoise and args.epochs > 1 else None
    for epoch in range(args.epochs):
        # new noise when the thread has it ready; a fast (GPU) run does not wait for it, it repeats the last set
        if epoch and nxt is not None and not nxt["thread"].is_alive():
            x_all, y_all = nxt["pairs"]
            draws += 1
            nxt = prepare(draws + 1) if epoch + 1 < args.epochs else None
        order = torch.randperm(n).to(dev)
        for i in range(0, n, bs):
            elapsed = time.time() - t_train
            progress = max(step / total, elapsed / (60 * args.minutes) if args.minutes else 0.0)
            if progress >= 1.0:
                break
            model.learning_rate = lr_at(progress, args.lr, args.warmup)
            idx = order[i:i + bs]
            losses.append(model.train_step(x_all[idx], y_all[idx]))
            step += 1
            seen += len(idx)
            if step % 500 == 0:
                print(f"  step {step}/{total}  progress {progress:.3f}  lr {model.learning_rate:.2e}  loss "
                      f"{sum(losses[-500:]) / len(losses[-500:]):.4f}  {seen / (time.time() - t_train):.0f} img/s",
                      flush=True)
            done = min(1.0, max(step / total, (time.time() - t_train) / (60 * args.minutes) if args.minutes else 0))
            if done >= (evals_done + 1) / args.evals and evals_done + 1 < args.evals:
                best = _evaluate(model, ds, args, step, seen, t_train, epoch, best, curve, losses)
                evals_done += 1
        if progress >= 1.0:
            break
    best = _evaluate(model, ds, args, step, seen, t_train, epoch, best, curve, losses)
    if curve:
        curve.close()

    check = model_module(engine).Model(**({} if args.device is None else {"device": args.device}))
    check.load_pretrained_model(args.out)
    final = evaluate(check, ds.val_input, ds.val_target)
    print(f"reloaded {args.out} in a fresh Model(): val PSNR {final['psnr']:.2f} dB, noisy input "
          f"{final['psnr_noisy']:.2f} dB, gain {final['psnr'] - final['psnr_noisy']:+.2f} dB; {step} steps, "
          f"{seen} images in {(time.time() - t_train) / 60:.1f} min"
          + (f", {draws} new noise draws over {epoch + 1} epochs" if args.renoise else ""), flush=True)
    return 0


def _evaluate(model, ds, args, step, seen, t_train, epoch, best, curve, losses) -> float:
    r = evaluate(model, ds.val_input, ds.val_target)
    elapsed = time.time() - t_train
    mark = ""
    if r["psnr"] > best:
        best = r["psnr"]
        model.save(args.out)
        mark = f"  -> saved {args.out}"
    recent = losses[-500:] or [float("nan")]
    print(f"eval at step {step} (epoch {epoch + 1}, {seen} images, {elapsed / 60:.1f} min): loss "
          f"{sum(recent) / len(recent):.4f}  val PSNR {r['psnr']:.2f} dB (noisy {r['psnr_noisy']:.2f}, gain "
          f"{r['psnr'] - r['psnr_noisy']:+.2f})  SSIM {r['ssim']:.3f}  {seen / max(elapsed, 1e-9):.0f} img/s{mark}",
          flush=True)
    if curve:
        curve.write(json.dumps({"step": step, "images": seen, "seconds": round(elapsed, 1), "psnr": r["psnr"],
                                "psnr_noisy": r["psnr_noisy"], "lr": model.learning_rate}) + "\n")
        curve.flush()
    return best
