"""Peak memory of ``n2n-tui denoise`` on a 4000 x 3000 photograph (required: under 2 GB), and its time.

    python benchmarks/bench_denoise_memory.py [--engine 1] [--size 4000x3000]

The photograph is a real one (scikit-image's astronaut) tiled to the size, written as PNG; the command runs in a
child process (one torch thread, ``--add-noise gaussian:25``) whose peak resident set size is read from the kernel.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import load_avg

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", default="1")
    p.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "photo.png"
        Image.fromarray(np.tile(a, (-(-h // 512), -(-w // 512), 1))[:h, :w]).save(src)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("N2N_THREADS", "1"))
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "tui.cli", "denoise", str(src), "-o", str(Path(d) / "out.png"),
                            "--engine", args.engine, "--add-noise", "gaussian:25"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        seconds = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
    print(r.stdout.strip() or r.stderr.strip())
    print(f"{w}x{h} engine {args.engine}: peak RSS {peak:.0f} MiB (limit 2048), {seconds:.0f} s, load {load_avg()}")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
