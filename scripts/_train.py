"""The training loop behind scripts/train_mp1.py and scripts/train_mp2.py: the shipped bestmodel.pth files.

Adam with a cosine learning-rate decay to 1% of the initial rate; the validation PSNR is measured after every epoch
exactly as the course grader does (predict on batches of 100, mean per-image PSNR), the best epoch's weights are
written atomically (Model.save), and at the end the file is reloaded into a fresh Model() and measured again.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import load_data  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.models import bestmodel_path, model_module  # noqa: E402


def _describe(model) -> str:
    net = model.net
    n = sum(p.numel() for p in net.parameters()) if hasattr(net, "parameters") else sum(p.numel() for p, _ in net.param())
    return f"device {model.device}, config {model.config}, batch {model.batch_size}, {n} parameters"


def main(engine: int, description: str) -> int:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="sample")
    p.add_argument("--noise", default="mix")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=None, help="default: the Model's own")
    p.add_argument("--lr", type=float, default=2e-3, help="initial rate, decayed to 1%% of it (cosine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(bestmodel_path(engine)))
    args = p.parse_args()
    if args.epochs < 1 or args.n_train < 1 or args.n_val < 1 or not args.lr > 0:
        p.error("epochs, n-train and n-val must be >= 1 and lr > 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    if engine == 2:
        torch.set_grad_enabled(False)  # the framework computes its own gradients
    torch.manual_seed(args.seed)
    t0 = time.time()
    ds = load_data(args.data, noise=args.noise, seed=args.seed, n_train=args.n_train, n_val=args.n_val)
    print(f"data: {ds.source} {ds.noise}: {len(ds)} training pairs, {len(ds.val_input)} validation "
          f"({time.time() - t0:.0f} s)", flush=True)

    Model = model_module(engine).Model
    model = Model(lr=args.lr)
    if args.batch_size:
        model.batch_size = args.batch_size
    print(f"{_describe(model)}, torch threads {torch.get_num_threads()}", flush=True)
    base = evaluate(model, ds.val_input, ds.val_target)
    print(f"noisy input: val PSNR {base['psnr_noisy']:.2f} dB", flush=True)

    n, bs = len(ds), model.batch_size
    total = math.ceil(n / bs) * args.epochs
    best, step, t_train = -math.inf, 0, time.time()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n)
        losses = []
        for i in range(0, n, bs):
            model.learning_rate = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / total)))
            idx = order[i:i + bs]
            losses.append(model.train_step(ds.train_input[idx], ds.train_target[idx]))
            step += 1
            if step % 200 == 0:
                print(f"  step {step}/{total}  loss {sum(losses[-200:]) / len(losses[-200:]):.4f}  "
                      f"{step * bs / (time.time() - t_train):.0f} img/s", flush=True)
        r = evaluate(model, ds.val_input, ds.val_target)
        elapsed = time.time() - t_train
        mark = ""
        if r["psnr"] > best:
            best = r["psnr"]
            model.save(args.out)
            mark = f"  -> saved {args.out}"
        print(f"epoch {epoch}/{args.epochs}  loss {sum(losses) / len(losses):.4f}  val PSNR {r['psnr']:.2f} dB "
              f"(noisy {r['psnr_noisy']:.2f}, gain {r['psnr'] - r['psnr_noisy']:+.2f})  SSIM {r['ssim']:.3f}  "
              f"{step * bs / elapsed:.0f} img/s  {elapsed / 60:.1f} min{mark}", flush=True)

    check = Model()
    check.load_pretrained_model(args.out)
    final = evaluate(check, ds.val_input, ds.val_target)
    print(f"reloaded {args.out}: val PSNR {final['psnr']:.2f} dB, noisy input {final['psnr_noisy']:.2f} dB, "
          f"gain {final['psnr'] - final['psnr_noisy']:+.2f} dB", flush=True)
    return 0
