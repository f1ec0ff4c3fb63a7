"""Noise2Noise works as the paper says: on Gaussian noise (L2 loss), training on noisy targets lands close to
training the same network for the same steps on clean targets (required: within 0.2 dB).

    python benchmarks/bench_n2n_vs_n2c.py [--steps 2000]
"""
import argparse
import math

import torch

from _common import load, load_avg, train_steps
from engine.evaluate import evaluate
from Miniproject_1.model import Model


def train(targets, ds, args):
    torch.manual_seed(args.seed)
    m = Model(loss="l2", lr=args.lr)
    # the input/target swap is a Noise2Noise augmentation: with clean targets it would train on clean inputs half the
    # time, so both arms train without it (flips and rotations stay)
    m.swap_pairs = False
    step = {"i": 0}

    def fn(x, y):
        m.learning_rate = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step["i"] / args.steps)))
        step["i"] += 1
        return m.train_step(x, y)

    train_steps(fn, ds.train_input, targets, args.steps, m.batch_size, args.seed)
    return evaluate(m, ds.val_input, ds.val_target)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ds = load("gaussian", args.n_train, 1000, args.seed)
    n2c = train(ds.train_clean, ds, args)
    n2n = train(ds.train_target, ds, args)
    print(f"sample/gaussian (sigma 0-50), {args.steps} steps, L2, load avg {load_avg()}")
    print(f"noisy input               PSNR {n2c['psnr_noisy']:.2f} dB")
    print(f"clean targets  (N2C)      PSNR {n2c['psnr']:.2f} dB")
    print(f"noisy targets  (N2N)      PSNR {n2n['psnr']:.2f} dB")
    print(f"gap N2C - N2N: {n2c['psnr'] - n2n['psnr']:+.2f} dB (required <= 0.2)")


if __name__ == "__main__":
    main()
