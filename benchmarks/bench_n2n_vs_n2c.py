"""Noise2Noise works as the paper says: on Gaussian noise (L2 loss), training on noisy targets lands close to
training the same network for the same steps on clean targets (required: within 0.2 dB).

    python benchmarks/bench_n2n_vs_n2c.py [--steps 2000]             # both arms, one after the other
    python benchmarks/bench_n2n_vs_n2c.py --arm n2c & python benchmarks/bench_n2n_vs_n2c.py --arm n2n   # one core each

Both arms use the same network, data, seed, schedule and flips/rotations. The Noise2Noise arm also swaps input and
target half the time (a noisy pair is symmetric, so this is part of Noise2Noise training); the clean-target arm
cannot (it would train on clean inputs), so ``--no-swap`` is there to compare without it.
"""
import argparse
import math

import torch
from _common import header, load, load_avg, set_threads, train_steps

from engine.evaluate import evaluate
from Miniproject_1.model import Model


def train(targets, ds, args, swap):
    torch.manual_seed(args.seed)
    m = Model(loss="l2", lr=args.lr)
    m.swap_pairs = swap
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
    p.add_argument("--arm", choices=["both", "n2c", "n2n"], default="both")
    p.add_argument("--no-swap", action="store_true", help="no input/target swap in the Noise2Noise arm either")
    p.add_argument("--unclipped", action="store_true",
                   help="Noise2Noise targets as float clean + N(0, sigma^2), not clipped to uint8 [0, 255]: "
                        "clipping biases the targets' mean near black and white, which the paper's setting avoids")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    set_threads(args.threads)
    print(header(), flush=True)
    ds = load("gaussian", args.n_train, 1000, args.seed)
    print(f"sample/gaussian (sigma 0-50), {args.steps} steps of 32, L2, load avg {load_avg()}")
    print(f"noisy input               PSNR {ds_psnr(ds):.2f} dB")
    r = {}
    if args.arm in ("both", "n2c"):
        r["n2c"] = train(ds.train_clean, ds, args, swap=False)["psnr"]
        print(f"clean targets  (N2C)      PSNR {r['n2c']:.2f} dB", flush=True)
    if args.arm in ("both", "n2n"):
        targets = ds.train_target
        if args.unclipped:
            g = torch.Generator().manual_seed(args.seed + 7)
            sigma = 50.0 * torch.rand(len(ds.train_clean), 1, 1, 1, generator=g)  # as engine.noise.gaussian
            targets = ds.train_clean.float() + sigma * torch.randn(ds.train_clean.shape, generator=g)
        swap = not args.no_swap and not args.unclipped  # a float target cannot be a clipped input's twin
        r["n2n"] = train(targets, ds, args, swap=swap)["psnr"]
        print(f"noisy targets  (N2N)      PSNR {r['n2n']:.2f} dB  (swap {'on' if swap else 'off'}, "
              f"{'unclipped float' if args.unclipped else 'uint8'} targets)")
    if len(r) == 2:
        print(f"gap N2C - N2N: {r['n2c'] - r['n2n']:+.2f} dB (required <= 0.2)")
    print(f"load average now {load_avg()}")


def ds_psnr(ds):
    from engine.metrics import psnr

    return psnr(ds.val_input, ds.val_target)


if __name__ == "__main__":
    main()
