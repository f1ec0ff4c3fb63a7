"""Measure a model: on patches the way the course grader does (``predict`` on batches of 100, outputs / 255, mean
per-image PSNR), and on whole photographs at a fixed noise (``evaluate_photos``: tiled inference, PSNR and SSIM per
image, optionally a classical baseline on the same noisy images)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .metrics import psnr, ssim

GRADER_BATCH = 100


def predict_all(model, noisy: torch.Tensor, batch: int = GRADER_BATCH) -> torch.Tensor:
    outs = [model.predict(noisy.narrow(0, i, min(batch, len(noisy) - i))).cpu() for i in range(0, len(noisy), batch)]
    return torch.cat(outs)


def evaluate(model, noisy: torch.Tensor, clean: torch.Tensor) -> dict:
    """PSNR/SSIM of the noisy input and of the model's output against the clean images."""
    denoised = predict_all(model, noisy)
    return {
        "n": len(noisy),
        "psnr_noisy": psnr(noisy, clean),
        "psnr": psnr(denoised, clean),
        "ssim_noisy": ssim(noisy, clean),
        "ssim": ssim(denoised, clean),
    }


def ssim_photo(denoised: torch.Tensor, clean: torch.Tensor) -> float | None:
    """SSIM of one (3, H, W) image in [0, 1] (``skimage.metrics``, 7 px window, smaller on small images);
    None where the image is too small for any window (under 3 px)."""
    from skimage.metrics import structural_similarity

    side = min(clean.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return None
    return float(structural_similarity(clean.permute(1, 2, 0).numpy(), denoised.permute(1, 2, 0).numpy(),
                                       data_range=1.0, channel_axis=-1, win_size=win))


def evaluate_photos(model, paths: list[Path], noise: str, seed: int = 0, baseline: str | None = None,
                    progress=None, self_ensemble: bool = False) -> dict:
    """Whole photographs at ``noise``: each read as RGB (grey repeated, like every data source), corrupted once
    (seeded per image, stored as 8-bit like the course data), denoised tile by tile, and compared with the clean
    image (``self_ensemble``: the mean over its 8 rotations and mirror images, ``engine.tiles``). ``baseline``
    ("bm3d") denoises the same noisy images. ``progress(name)`` is called before each image.
    Returns ``{"n", "psnr", "psnr_noisy", "ssim", "ssim_noisy", "images": [{"name", "size", "psnr", ...}]}`` plus
    ``psnr_<baseline>`` / ``ssim_<baseline>`` and their per-image values, and the seconds each method took."""
    from .baselines import bm3d_denoise
    from .images import read_image
    from .noise import corrupt_float
    from .tiles import predict_photo

    rows, seconds = [], {"model": 0.0, **({baseline: 0.0} if baseline else {})}
    for i, path in enumerate(paths):
        if progress is not None:
            progress(path.name)
        clean = read_image(path).rgb()
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        noisy = corrupt_float(clean[None], noise, g)[0].mul(255).round().div(255)
        t0 = time.perf_counter()
        denoised = predict_photo(model, noisy, 255.0, self_ensemble).div_(255.0)
        seconds["model"] += time.perf_counter() - t0
        row = {"name": path.name, "size": [clean.shape[2], clean.shape[1]],
               "psnr": _psnr(denoised, clean), "psnr_noisy": _psnr(noisy, clean),
               "ssim": ssim_photo(denoised, clean), "ssim_noisy": ssim_photo(noisy, clean)}
        if baseline:
            t0 = time.perf_counter()
            base = bm3d_denoise(noisy, noise)
            seconds[baseline] += time.perf_counter() - t0
            row[f"psnr_{baseline}"], row[f"ssim_{baseline}"] = _psnr(base, clean), ssim_photo(base, clean)
        rows.append(row)
    result = {"n": len(rows)}
    for key in rows[0] if rows else []:
        if key.startswith(("psnr", "ssim")):
            values = [r[key] for r in rows if r[key] is not None]
            result[key] = sum(values) / len(values) if values else None
    result["images"] = rows
    result["seconds"] = seconds
    return result


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    v = psnr(a[None], b[None], max_val=1.0)
    return v if math.isfinite(v) else None
