"""Train the shipped Miniproject_1/bestmodel.pth (PyTorch U-Net) on `sample` data with `mix` noise.

    python scripts/train_mp1.py --threads 1          # the recorded run (README: command and measured PSNR)
    python scripts/train_mp1.py --epochs 1 --n-train 2000 --out /tmp/m1.pth   # a smoke run
"""
import sys

from _train import main

if __name__ == "__main__":
    sys.exit(main(1, __doc__.splitlines()[0]))
