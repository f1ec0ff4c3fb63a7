"""Train the shipped Miniproject_1/bestmodel.pth (PyTorch U-Net) on `sample` data with `mix` noise.

    python scripts/train_mp1.py                                       # the recipe below (see README, Shipped weights)
    python scripts/train_mp1.py --epochs 1 --n-train 2000 --out /tmp/m1.pth   # a smoke run
"""
import sys

from _train import main

DEFAULTS = dict(n_train=20000, epochs=6, renoise=False, batch_size=32, lr=2e-3, evals=6, widths="32,48,64")

if __name__ == "__main__":
    sys.exit(main(1, __doc__.splitlines()[0], DEFAULTS))
