"""Train the shipped Miniproject_2/bestmodel.pth (the from-scratch framework) on `sample` data with `mix` noise.

    python scripts/train_mp2.py                                       # the recipe below (see README, Shipped weights)
    python scripts/train_mp2.py --epochs 1 --n-train 300 --n-val 100 --out /tmp/m2.pth   # a smoke run
"""
import sys

from _train import main

DEFAULTS = dict(n_train=20000, epochs=6, renoise=False, batch_size=32, lr=2e-3, evals=6, c1=64, c2=96, c3=64, k=3)

if __name__ == "__main__":
    sys.exit(main(2, __doc__.splitlines()[0], DEFAULTS))
