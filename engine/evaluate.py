"""Measure a model the way the course grader does: ``predict`` on batches of 100, outputs / 255, mean per-image PSNR."""
from __future__ import annotations

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
