"""Train the shipped Miniproject_2/bestmodel.pth (the from-scratch framework) on `sample` data with `mix` noise.

    python scripts/train_mp2.py --threads 1          # the recorded run (README: command and measured PSNR)
    python scripts/train_mp2.py --epochs 1 --n-train 300 --n-val 100 --out /tmp/m2.pth   # a smoke run
"""
import sys

from _train import main

if __name__ == "__main__":
    sys.exit(main(2, __doc__.splitlines()[0]))
