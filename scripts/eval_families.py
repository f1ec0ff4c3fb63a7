"""Per-noise-family PSNR of a bestmodel.pth on the `sample` validation photographs (docs/training.md's weights table).

    python scripts/eval_families.py --engine 1                       # Miniproject_1/bestmodel.pth
    python scripts/eval_families.py --engine 2 --weights run/best.pth
    python scripts/eval_families.py --engine 2 --markdown            # a table for docs/training.md

The clean images are the 1000 `sample` validation crops of seed 0 (the ones behind docs/training.md's `mix` figure).
Each family corrupts them at a fixed mid strength, ``engine.noise.corrupt(..., level=(0.5, 0.5))``: gaussian sigma 25 of
255, poisson 27.5 photons at full scale, impulse 21% of the pixels in 1-2 px blocks, pixelate 3 px blocks, blocky
3 px blocks plus 11% wrong-colour pixels. The `mix` row is the standard validation set (a random family and strength
per image), i.e. the number in docs/training.md's table of shipped weights. PSNR as the course grader measures it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from engine.data import load_data
from engine.evaluate import evaluate
from engine.models import bestmodel_path, model_module
from engine.noise import corrupt

FAMILIES = ("gaussian", "poisson", "impulse", "pixelate", "blocky")


def family_table(model, n_val: int = 1000, seed: int = 0, level: float = 0.5) -> list[dict]:
    """[{family, noisy, model}] PSNR in dB: each family at ``level``, then the standard `mix` validation pairs."""
    ds = load_data("sample", noise="mix", seed=seed, n_train=1, n_val=n_val)
    clean = ds.val_target
    rows = []
    for i, family in enumerate(FAMILIES):
        noisy = corrupt(clean, family, torch.Generator().manual_seed(seed * 3 + 3 + 1000 * (i + 1)),
                        level=(level, level))
        r = evaluate(model, noisy, clean)
        rows.append({"family": f"{family} {level:g}", "noisy": r["psnr_noisy"], "model": r["psnr"]})
    r = evaluate(model, ds.val_input, clean)
    rows.append({"family": "mix (validation set)", "noisy": r["psnr_noisy"], "model": r["psnr"]})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=int, choices=(1, 2), required=True)
    p.add_argument("--weights", default=None, help="default: Miniproject_<engine>/bestmodel.pth")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.5, help="noise strength in [0, 1] (engine/noise.py)")
    p.add_argument("--device", default=None, help="default: the Model's own choice (cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.engine == 2:
        torch.set_grad_enabled(False)
    weights = Path(a.weights) if a.weights else bestmodel_path(a.engine)
    Model = model_module(a.engine).Model
    model = Model() if a.device is None else Model(device=a.device)
    model.load_pretrained_model(weights)
    t0 = time.time()
    rows = family_table(model, a.n_val, a.seed, a.level)
    if a.json:
        print(json.dumps({"engine": a.engine, "weights": str(weights), "config": model.config, "rows": rows}))
        return 0
    print(f"engine {a.engine}, {weights}, config {model.config}: {a.n_val} `sample` validation crops (seed "
          f"{a.seed}), fixed level {a.level:g} ({time.time() - t0:.0f} s)")
    if a.markdown:
        print("| noise | noisy input | model | gain |\n| --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['family']} | {r['noisy']:.2f} dB | {r['model']:.2f} dB | {r['model'] - r['noisy']:+.2f} |")
    else:
        print(f"{'noise':<22} {'noisy':>9} {'model':>9} {'gain':>7}")
        for r in rows:
            print(f"{r['family']:<22} {r['noisy']:7.2f}dB {r['model']:7.2f}dB {r['model'] - r['noisy']:+7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
