"""Miniproject_1's U-Net against a plain 8-layer CNN (the course's reference point), same data, loss, optimizer,
batch size and number of steps. Prints the validation PSNR of both and the margin.

    python benchmarks/bench_mp1_vs_cnn.py [--steps 1500] [--noise mix]
"""
import argparse

import torch
from _common import header, load, load_avg, set_threads, train_steps
from torch import nn

from engine.evaluate import evaluate
from engine.schedule import Schedule
from Miniproject_1.model import Model


class PlainCNN(nn.Module):
    """Eight 3x3 convolutions, 48 channels, ReLU, residual output: the kind of baseline the course quotes (24 dB)."""

    def __init__(self, width=48, layers=8):
        super().__init__()
        mods, cin = [], 3
        for _ in range(layers - 1):
            mods += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        mods.append(nn.Conv2d(cin, 3, 3, padding=1))
        self.body = nn.Sequential(*mods)
        self.multiple = 1

    def forward(self, x):
        return x + self.body(x)


def run(model, ds, steps, lr, seed):
    total = steps

    step = {"i": 0}
    cosine = Schedule("cosine", decay_to=0.01)  # scripts/train_mp1.py's schedule (engine.Trainer's), no warm-up

    def fn(x, y):
        model.learning_rate = lr * cosine.factor(step["i"], total)
        step["i"] += 1
        return model.train_step(x, y)

    torch.manual_seed(seed)
    ips = train_steps(fn, ds.train_input, ds.train_target, steps, model.batch_size, seed)
    return evaluate(model, ds.val_input, ds.val_target), ips


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--noise", default="mix")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    set_threads(args.threads)
    print(header(), flush=True)
    ds = load(args.noise, args.n_train, 1000, args.seed)

    torch.manual_seed(args.seed)
    unet = Model(lr=args.lr)
    torch.manual_seed(args.seed)
    cnn = Model(lr=args.lr)
    cnn.net = PlainCNN().to(cnn.device, memory_format=torch.channels_last)
    cnn.optimizer = torch.optim.Adam(cnn.net.parameters(), lr=args.lr, betas=(0.9, 0.99))

    r_unet, ips_u = run(unet, ds, args.steps, args.lr, args.seed)
    r_cnn, ips_c = run(cnn, ds, args.steps, args.lr, args.seed)
    params = lambda m: sum(p.numel() for p in m.net.parameters())  # noqa: E731
    print(f"sample/{args.noise}, {args.steps} steps of {unet.batch_size}, L1, Adam, load avg {load_avg()}")
    print(f"noisy input          PSNR {r_unet['psnr_noisy']:.2f} dB")
    print(f"U-Net (Miniproject_1) PSNR {r_unet['psnr']:.2f} dB  ({params(unet)} params, {ips_u:.0f} img/s)")
    print(f"plain 8-layer CNN     PSNR {r_cnn['psnr']:.2f} dB  ({params(cnn)} params, {ips_c:.0f} img/s)")
    print(f"margin U-Net - CNN: {r_unet['psnr'] - r_cnn['psnr']:+.2f} dB; load average now {load_avg()}")


if __name__ == "__main__":
    main()
