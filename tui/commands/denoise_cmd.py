"""``n2n-tui denoise IMAGE... -o OUT``: photographs of any size through a trained model, tile by tile.

Each image keeps its mode and depth (grey stays grey, RGBA keeps its alpha untouched, 16-bit stays 16-bit). With
``--add-noise SPEC`` the clean input is corrupted first (seeded), the noisy image is written next to the result, and
the PSNR of both against the input is reported, measured on the files as written. Every check that can fail runs
before the first file is written; inputs are never overwritten, existing outputs only with ``--force``.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from engine.images import MAX_PIXELS, Picture, check_writable, image_info, read_image, write_image
from engine.metrics import psnr
from engine.noise import corrupt_float
from engine.threads import use_threads
from engine.tiles import predict_photo
from tui.errors import UsageError
from tui.parser import threads_setting

from .weights import load_model, resolve_weights


def plan_outputs(images: list[str], out: str, noisy: bool) -> list[tuple[Path, Path, Path | None]]:
    """(input, output, noisy output or None) for each image, after every check on the paths."""
    inputs = [Path(p) for p in images]
    for p in inputs:
        if not p.is_file():
            raise UsageError(f"{p}: {'is a directory, not an image' if p.is_dir() else 'file not found'}")
    target = Path(out)
    as_folder = len(inputs) > 1 or target.is_dir() or out.endswith(os.sep)
    if as_folder:
        if target.exists() and not target.is_dir():
            raise UsageError(f"-o {out}: a file, but {len(inputs)} images were given: name a folder")
        names = [p.name for p in inputs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"two inputs are named {twice[0]}: they would write the same file in {out}")
        outputs = [target / p.name for p in inputs]
    else:
        outputs = [target]
    plan = []
    for src, dst in zip(inputs, outputs):
        extra = dst.with_name(f"{dst.stem}-noisy{dst.suffix}") if noisy else None
        plan.append((src, dst, extra))
    return plan


def check_plan(plan, force: bool) -> None:
    inputs = {p.resolve() for p, _, _ in plan}
    for _, dst, extra in plan:
        for path in (dst, extra):
            if path is None:
                continue
            check_writable(path)  # the suffix is a format we write (depth and alpha: per image, later)
            if path.resolve() in inputs:
                raise UsageError(f"{path}: is one of the input images; refusing to overwrite it")
            if path.exists() and not force:
                raise UsageError(f"{path}: exists (use --force to replace it)")
            if path.is_dir():
                raise UsageError(f"{path}: is a directory")


def _psnr_db(a: Picture, b: Picture) -> float:
    """PSNR of ``a`` against ``b`` on [0, 1] values, the course formula (alpha is not compared)."""
    return psnr(a.pixels[None], b.pixels[None], max_val=1.0)


def denoise_picture(model, pic: Picture, self_ensemble: bool = False) -> Picture:
    """The picture through the model (grey: repeated to RGB, then averaged back); alpha and depth unchanged."""
    out = predict_photo(model, pic.rgb(), 255.0, self_ensemble).div_(255.0)
    if pic.pixels.shape[0] == 1:
        out = out.mean(0, keepdim=True)
    return Picture(out, pic.alpha, pic.bits)


def run(args) -> int:
    use_threads(threads_setting(args))
    plan = plan_outputs(args.images, args.out, args.add_noise is not None)
    check_plan(plan, args.force)
    folder = plan[0][1].parent
    if len(plan) > 1 or args.out.endswith(os.sep) or Path(args.out).is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"-o {args.out}: cannot create the folder ({e.strerror})") from None
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"-o {args.out}: {folder} {why}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"-o {args.out}: folder {folder} is not writable")
    for src, _, _ in plan:  # every input's size before any work: a 144-megapixel PNG is minutes, not seconds
        w, h, frames = image_info(src)
        if w * h > MAX_PIXELS and not args.allow_large:
            raise UsageError(f"{src}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above the {MAX_PIXELS / 1e6:.0f} that "
                             "denoise takes without --allow-large (minutes per image on a CPU)")
        if frames > 1:
            print(f"n2n-tui: note: {src} has {frames} frames (an animation); only the first is denoised",
                  file=sys.stderr)
    engine, weights = resolve_weights(args.weights, args.engine, args.runs_dir)
    model = load_model(engine, weights, args.device)

    for src, dst, noisy_path in plan:
        t0 = time.perf_counter()
        clean = read_image(src, exact=True, any_size=True)
        check_writable(dst, clean)
        source, psnr_noisy = clean, None
        if args.add_noise is not None:
            g = torch.Generator().manual_seed(args.seed)
            write_image(noisy_path, Picture(corrupt_float(clean.pixels[None], args.add_noise, g)[0], clean.alpha,
                                            clean.bits))
            # what the file holds: quantised (and JPEG-compressed)
            source = read_image(noisy_path, exact=True, any_size=True)
            psnr_noisy = _psnr_db(source, clean)
        write_image(dst, denoise_picture(model, source, args.self_ensemble))
        p = _psnr_db(read_image(dst, exact=True, any_size=True), clean)
        seconds = time.perf_counter() - t0
        if args.json:
            print(json.dumps({"input": str(src), "output": str(dst),
                              **({"noisy": str(noisy_path)} if noisy_path else {}),
                              "psnr_noisy": _finite(psnr_noisy), "psnr": _finite(p), "seconds": round(seconds, 3)}),
                  flush=True)
            continue
        h, w = clean.size
        kind = f"{'grey' if clean.pixels.shape[0] == 1 else 'RGB'}{'+alpha' if clean.alpha is not None else ''}"
        print(f"{src} -> {dst}  ({w}x{h} {kind} {clean.bits}-bit, engine {engine}, {seconds:.1f} s)")
        if psnr_noisy is not None:
            print(f"  noisy ({args.add_noise}) {noisy_path}: PSNR {psnr_noisy:.2f} dB; denoised: PSNR {p:.2f} dB "
                  f"(gain {p - psnr_noisy:+.2f} dB)")
    return 0


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None
