"""Write dead-leaves images (occluding discs of power-law sizes) as PNG files: photographs-like statistics from a
source that shares nothing with the `sample` photographs, for checks on data unlike the training data.

    python scripts/dead_leaves.py --out /tmp/leaves --n 40 --seed 0
    n2n-tui data make --out /tmp/leaves-data --source images:/tmp/leaves

Each image: discs dropped one after another on a 2x canvas (a new disc goes under the ones already there, so the
first ones dropped are in front), radii with density ~ r^-3 between 6 and 300 px (the scale-invariant choice of the
dead-leaves model), each disc a muted random colour with a linear shading across it, until the canvas is covered; then a
slight blur and an area downsampling by 2 (soft edges, as a camera's). Seeded: the same --seed writes the same files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.io import imsave
from skimage.transform import downscale_local_mean


def dead_leaves(size: int, rng: np.random.Generator, r_min: float = 6.0, r_max: float = 300.0) -> np.ndarray:
    """One (size, size, 3) uint8 image."""
    big = 2 * size
    img = np.zeros((big, big, 3))
    free = np.ones((big, big), bool)
    yy, xx = np.mgrid[0:big, 0:big]
    while free.mean() > 0.001:
        # inverse-CDF sample of a density ~ r^-3 on [r_min, r_max]
        u = rng.random()
        r = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5
        cy, cx = rng.uniform(-r, big + r, 2)
        y0, y1 = max(0, int(cy - r)), min(big, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(big, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        inside = ((sy - cy) ** 2 + (sx - cx) ** 2 <= r * r) & free[y0:y1, x0:x1]
        if not inside.any():
            continue
        grey = rng.random() ** 1.5                        # darker tones more often, and muted colours, as in
        colour = np.clip(grey + rng.uniform(0, 0.5) * (rng.random(3) - 0.5), 0, 1)   # photographs
        slope = rng.normal(0, 0.15, 2) / max(r, 1.0)      # a gentle linear shading across the disc
        shade = colour + ((sy - cy) * slope[0] + (sx - cx) * slope[1])[..., None]
        img[y0:y1, x0:x1][inside] = np.clip(shade[inside], 0, 1)
        free[y0:y1, x0:x1][inside] = False
    img = gaussian_filter(img, sigma=(0.7, 0.7, 0))
    return (downscale_local_mean(img, (2, 2, 1)) * 255).round().clip(0, 255).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for i in range(a.n):
        imsave(out / f"leaves_{i:03d}.png", dead_leaves(a.size, rng), check_contrast=False)
    print(f"{a.n} images of {a.size}x{a.size} in {out}")


if __name__ == "__main__":
    main()
