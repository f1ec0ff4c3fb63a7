"""Image quality metrics, computed the way the course grades: on [0, 1] values, per image, then averaged."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr_per_image(denoised: torch.Tensor, clean: torch.Tensor, max_val: float = 255.0) -> torch.Tensor:
    """PSNR in dB of each image: -10 log10(mean((d - c)^2) + 1e-8) on values scaled to [0, 1] (the course formula)."""
    if denoised.shape != clean.shape:
        raise ValueError(f"shape mismatch: {tuple(denoised.shape)} vs {tuple(clean.shape)}")
    d = denoised.detach().float().cpu() / max_val
    c = clean.detach().float().cpu() / max_val
    mse = ((d - c) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse + 1e-8)


def psnr(denoised: torch.Tensor, clean: torch.Tensor, max_val: float = 255.0) -> float:
    """Mean over images of the per-image PSNR, exactly what the course grader reports."""
    return psnr_per_image(denoised, clean, max_val).mean().item()


def ssim(denoised: torch.Tensor, clean: torch.Tensor, max_val: float = 255.0, window: int = 7) -> float:
    """Mean structural similarity (Wang et al., 2004) with a Gaussian window (sigma 1.5), averaged over channels and
    images. A small window suits 32x32 patches; on images smaller than the window it shrinks to the largest odd
    size that fits (down to 1 px, where SSIM compares means only)."""
    d = denoised.detach().float().cpu() / max_val
    c = clean.detach().float().cpu() / max_val
    side = min(d.shape[-2:])
    window = min(window, side if side % 2 else side - 1)
    ax = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g1 = torch.exp(-(ax ** 2) / (2 * 1.5 ** 2))
    g1 = g1 / g1.sum()
    k = (g1[:, None] * g1[None, :]).expand(d.shape[1], 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(t, k, groups=d.shape[1])

    mu_d, mu_c = blur(d), blur(c)
    var_d = blur(d * d) - mu_d ** 2
    var_c = blur(c * c) - mu_c ** 2
    cov = blur(d * c) - mu_d * mu_c
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_d * mu_c + c1) * (2 * cov + c2)) / ((mu_d ** 2 + mu_c ** 2 + c1) * (var_d + var_c + c2))
    return s.mean().item()
