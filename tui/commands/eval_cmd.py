"""``n2n-tui eval``: PSNR of a checkpoint on a data source's validation pairs, or with ``--full`` on whole
photographs at a fixed noise, per image, with SSIM and optionally BM3D on the same noisy images."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from engine.data import (
    SAMPLE_VAL,
    DataError,
    default_spec,
    image_files,
    load_data,
    not_a_folder,
    parse_spec,
    pypi_photos,
    sample_dir,
    size_problem,
)
from engine.evaluate import evaluate, evaluate_photos
from engine.threads import use_threads
from tui.errors import UsageError
from tui.parser import threads_setting

from .weights import load_model, resolve_weights


def run(args) -> int:
    use_threads(threads_setting(args))
    spec = args.data or default_spec()
    parse_spec(spec)  # a bad spec is reported before anything is loaded
    if args.baseline and not args.full:
        raise UsageError("--baseline needs --full (baselines run on whole photographs)")
    if args.self_ensemble and not args.full:
        raise UsageError("--self-ensemble needs --full (it averages passes over whole photographs)")
    photos = full_images(spec) if args.full else None
    if args.baseline:
        from engine.baselines import BaselineUnavailable, require

        try:
            require(args.baseline)
        except BaselineUnavailable as e:
            raise UsageError(str(e)) from None
    engine, weights = resolve_weights(args.weights, args.engine, args.runs_dir)
    model = load_model(engine, weights, args.device)
    if photos is not None:
        return _full(args, model, engine, weights, spec, photos)
    if args.n_val is not None and not spec.startswith("course:") and size_problem(args.n_val):
        raise UsageError(f"--n-val {args.n_val}: {size_problem(args.n_val)}")
    ds = load_data(spec, noise=args.noise, seed=args.seed, n_train=1, n_val=args.n_val)
    r = evaluate(model, ds.val_input, ds.val_target)
    r.update(engine=engine, weights=str(weights), data=ds.source, noise=ds.noise)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"engine {engine}  {weights}  on {ds.source}" + (f" ({ds.noise})" if ds.noise else "")
              + f", {r['n']} images")
        print(f"  noisy input  PSNR {r['psnr_noisy']:6.2f} dB   SSIM {r['ssim_noisy']:.3f}")
        print(f"  denoised     PSNR {r['psnr']:6.2f} dB   SSIM {r['ssim']:.3f}   "
              f"(gain {r['psnr'] - r['psnr_noisy']:+.2f} dB)")
    return 0


def full_images(spec: str) -> list[Path]:
    """Every photograph of ``images:DIR`` (sorted) or of ``pypi``, or the held-out ``sample`` photographs."""
    kind, arg = parse_spec(spec)
    if kind == "sample":
        return [sample_dir() / name for name in SAMPLE_VAL]
    if kind == "pypi":
        return pypi_photos()
    if kind != "images":
        raise UsageError(f"--full needs whole photographs: --data images:DIR, sample or pypi, not {spec}")
    d = Path(arg)
    if not d.is_dir():
        raise DataError(not_a_folder(d))
    files = image_files(d)
    if not files:
        raise DataError(f"{d}: no PNG/JPEG/TIFF images")
    return files


def _full(args, model, engine: int, weights: Path, spec: str, photos: list[Path]) -> int:
    live = not args.json and sys.stderr.isatty()
    progress = (lambda name: print(f"\r\033[K  {name}…", end="", file=sys.stderr, flush=True)) if live else None
    r = evaluate_photos(model, photos, args.noise, args.seed, args.baseline, progress=progress,
                        self_ensemble=args.self_ensemble)
    if live:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    r.update(engine=engine, weights=str(weights), data=spec, noise=args.noise, self_ensemble=args.self_ensemble)
    if args.json:
        print(json.dumps(r))
        return 0
    base = args.baseline
    print(f"engine {engine}  {weights}  on {len(photos)} whole images of {spec}, noise {args.noise} (seed {args.seed})"
          + (", self-ensemble of 8" if args.self_ensemble else ""))
    head = f"{'image':<20} {'size':>9}  {'noisy':>13}  {'model':>13}"
    if base:
        head += f"  {base.upper():>13}  {'model-' + base.upper():>10}"
    print(head)
    print(f"{'':<20} {'':>9}  {'PSNR   SSIM':>13}  {'PSNR   SSIM':>13}" + (f"  {'PSNR   SSIM':>13}  {'dB':>10}"
                                                                            if base else ""))
    rows = r["images"] + [{"name": "mean", "size": None, **{k: v for k, v in r.items()
                                                            if k.startswith(("psnr", "ssim"))}}]
    for row in rows:
        size = f"{row['size'][0]}x{row['size'][1]}" if row["size"] else ""
        line = f"{row['name'][:20]:<20} {size:>9}  {_pair(row, '_noisy')}  {_pair(row, '')}"
        if base:
            gap = row["psnr"] - row[f"psnr_{base}"]
            line += f"  {_pair(row, '_' + base)}  {gap:>+10.2f}"
        print(line)
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items())
    print(f"time: {secs}")
    return 0


def _pair(row: dict, suffix: str) -> str:
    p, s = row.get(f"psnr{suffix}"), row.get(f"ssim{suffix}")
    ps = f"{p:6.2f}" if p is not None and math.isfinite(p) else "     –"
    ss = f"{s:.3f}" if s is not None else "  n/a"
    return f"{ps} {ss:>6}"
