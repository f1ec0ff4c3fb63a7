"""Per-noise-family PSNR of bestmodel.pth files: on the `sample` validation crops (docs/training.md's weights table),
or with --photos on whole photographs, such as the `pypi` second source (issue 25).

    python scripts/eval_families.py --engine 1                       # Miniproject_1/bestmodel.pth
    python scripts/eval_families.py --engine 2 --weights run/best.pth
    python scripts/eval_families.py --engine 2 --markdown            # a table for docs/training.md
    python scripts/eval_families.py --engine 1 --photos pypi --weights old.pth Miniproject_1/bestmodel.pth --markdown

Crops: the 1000 `sample` validation crops of seed 0 (the ones behind docs/training.md's `mix` figure). Each family
corrupts them at a fixed mid strength, ``engine.noise.corrupt(..., level=(0.5, 0.5))``: gaussian sigma 25 of 255,
poisson 27.5 photons at full scale, impulse 21% of the pixels in 1-2 px blocks, pixelate 3 px blocks, blocky 3 px
blocks plus 11% wrong-colour pixels. The `mix` row is the standard validation set (a random family and strength per
image), i.e. the number in docs/training.md's table of shipped weights. PSNR as the course grader measures it.

Photos (``--photos sample|pypi|images:DIR``): the whole photographs ``n2n-tui eval --full --data SPEC`` measures, at
the same strengths (``engine.noise.fixed_specs``: gaussian:25, poisson:27.5, impulse:0.21, pixelate:3, blocky:0.11)
and with `mix`; the mean of per-photo PSNR. Every file sees the very same noisy photographs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from engine.data import load_data
from engine.evaluate import evaluate, evaluate_photos
from engine.models import bestmodel_path, model_module
from engine.noise import corrupt, fixed_specs

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


def photo_table(model, photos: list[Path], seed: int = 0, level: float = 0.5) -> list[dict]:
    """[{family, noisy, model}]: mean PSNR (dB) of whole ``photos`` at each of ``fixed_specs(level)``."""
    rows = []
    for spec in fixed_specs(level).values():
        r = evaluate_photos(model, photos, spec, seed)
        rows.append({"family": spec, "noisy": r["psnr_noisy"], "model": r["psnr"]})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", type=int, choices=(1, 2), required=True)
    p.add_argument("--weights", nargs="+", default=None,
                   help="one or more files, a column each (default: Miniproject_<engine>/bestmodel.pth)")
    p.add_argument("--photos", default=None, metavar="SPEC",
                   help="whole photographs of sample (its held-out ones), pypi or images:DIR instead of crops")
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
    photos = None
    if a.photos:
        from tui.commands.eval_cmd import full_images

        photos = full_images(a.photos)
    files = [Path(w) for w in a.weights] if a.weights else [bestmodel_path(a.engine)]
    Model = model_module(a.engine).Model
    t0 = time.time()
    tables, configs = [], []
    for weights in files:
        model = Model() if a.device is None else Model(device=a.device)
        model.load_pretrained_model(weights)
        configs.append(model.config)
        tables.append(photo_table(model, photos, a.seed, a.level) if photos else
                      family_table(model, a.n_val, a.seed, a.level))
    if a.json:
        print(json.dumps({"engine": a.engine, "photos": a.photos, "weights": [str(w) for w in files],
                          "configs": configs, "tables": tables}))
        return 0
    what = (f"{len(photos)} whole photographs of {a.photos}" if photos else
            f"{a.n_val} `sample` validation crops")
    print(f"engine {a.engine}: {what} (seed {a.seed}), fixed level {a.level:g} ({time.time() - t0:.0f} s)")
    for i, (w, c) in enumerate(zip(files, configs), 1):
        print(f"  [{i}] {w}  config {c}")
    names = [f"[{i}]" for i in range(1, len(files) + 1)] if len(files) > 1 else ["model"]
    rows = [(r["family"], r["noisy"], [t[k]["model"] for t in tables]) for k, r in enumerate(tables[0])]
    if a.markdown:
        gain = ["gain"] if len(files) == 1 else [f"{names[-1]} - {names[0]}"]
        print("| noise | noisy input | " + " | ".join(names + gain) + " |")
        print("| --- " * (3 + len(names)) + "|")
        for fam, noisy, ms in rows:
            d = ms[-1] - (noisy if len(ms) == 1 else ms[0])
            print(f"| {fam} | {noisy:.2f} dB | " + " | ".join(f"{m:.2f} dB" for m in ms) + f" | {d:+.2f} |")
    else:
        print(f"{'noise':<22} {'noisy':>9} " + " ".join(f"{n:>9}" for n in names))
        for fam, noisy, ms in rows:
            print(f"{fam:<22} {noisy:7.2f}dB " + " ".join(f"{m:7.2f}dB" for m in ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
