"""Noise models for Noise2Noise training.

Each model corrupts a batch of clean images independently per image, with a strength drawn per image, and names the
loss the Noise2Noise paper (Lehtinen et al., 2018) pairs with it: L2 for zero-mean noise (the mean of the noisy
targets is the clean image), L1 where a minority of pixels is replaced (the median survives), L0 (annealed) for
the same at higher density.

All functions take float images in [0, 1] shaped (N, C, H, W) and a ``torch.Generator``; ``corrupt`` is the entry
point for uint8 images in [0, 255].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

NoiseFn = Callable[[torch.Tensor, torch.Generator, torch.Tensor], torch.Tensor]


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def gaussian(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """Additive white Gaussian noise, sigma = level * 50/255 (the paper's training range is sigma in [0, 50])."""
    sigma = _per_image(level * 50.0 / 255.0)
    return x + sigma * torch.randn(x.shape, generator=g)


def poisson(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """Poisson (shot) noise: counts ~ Poisson(lambda * x) / lambda, lambda = 50 (level 0) down to 5 (level 1)."""
    lam = _per_image(50.0 - 45.0 * level)
    return torch.poisson(x * lam, generator=g) / lam


def _blocks(x: torch.Tensor, g: torch.Generator, density: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Paint ``colours`` into 1-2 px blocks (1x1, 1x2, 2x1 or 2x2) covering about ``density`` of the pixels."""
    n, _, h, w = x.shape
    # a seed covers 1 px, +0.5 right, +0.5 down, +0.25 diagonal on average: 2.25 px per seed
    seeds = torch.rand((n, 1, h, w), generator=g) < _per_image(density / 2.25)
    wide = torch.rand((n, 1, h, w), generator=g) < 0.5
    tall = torch.rand((n, 1, h, w), generator=g) < 0.5
    out = x.clone()
    for dy, dx, part in ((0, 0, seeds), (0, 1, seeds & wide), (1, 0, seeds & tall), (1, 1, seeds & wide & tall)):
        # shift the block's mask and its colour by (dy, dx), dropping what falls off the image
        m = F.pad(part, (dx, 0, dy, 0))[:, :, :h, :w]
        c = F.pad(colours, (dx, 0, dy, 0))[:, :, :h, :w]
        out = torch.where(m, c, out)
    return out


def impulse(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """Random-valued impulse noise in 1-2 px blocks: up to 40% of pixels replaced by a uniformly random colour."""
    colours = torch.rand(x.shape, generator=g)
    return _blocks(x, g, 0.02 + 0.38 * level, colours)


def pixelate(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """Pixelation with a random phase: average over b x b blocks (b = 2..4 by level) whose grid is shifted at random."""
    n, c, h, w = x.shape
    block = (2 + (level * 2.999).floor()).long()  # 2, 3 or 4
    oy = (torch.rand(n, generator=g) * block).long()
    ox = (torch.rand(n, generator=g) * block).long()
    out = torch.empty_like(x)
    keys = block * 100 + oy * 10 + ox
    for key in keys.unique().tolist():
        b, py, px = key // 100, (key // 10) % 10, key % 10
        idx = (keys == key).nonzero().flatten()
        # shift the grid by padding (py, px) in front, pool, blow back up, and crop back to (h, w)
        padded = F.pad(x[idx], (px, b, py, b), mode="replicate")
        hh, ww = (h + py) // b * b + b, (w + px) // b * b + b
        pooled = F.avg_pool2d(padded[:, :, :hh, :ww], b)
        up = F.interpolate(pooled, scale_factor=b, mode="nearest")
        out[idx] = up[:, :, py:py + h, px:px + w]
    return out


def blocky(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """What the course data looks like: a pixelated image with scattered 1-2 px blocks of wrong colour on top."""
    low = pixelate(x, g, level)
    return _blocks(low, g, 0.02 + 0.18 * level, torch.rand(x.shape, generator=g))


@dataclass(frozen=True)
class NoiseModel:
    name: str
    fn: NoiseFn
    loss: str  # the loss the paper pairs with this noise: "l2", "l1" or "l0"
    help: str


_BASE = {
    "gaussian": NoiseModel("gaussian", gaussian, "l2", "additive Gaussian, sigma 0-50 of 255"),
    "poisson": NoiseModel("poisson", poisson, "l2", "Poisson shot noise, peak 5-50 photons"),
    "impulse": NoiseModel("impulse", impulse, "l1", "random-valued impulse in 1-2 px blocks, 2-40% of pixels"),
    "pixelate": NoiseModel("pixelate", pixelate, "l2", "block-average pixelation (2-4 px) with random phase"),
    "blocky": NoiseModel("blocky", blocky, "l1", "pixelation plus scattered wrong-colour blocks (course-like)"),
}


def mix(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """A random model and strength per image: the blind default, since test noise may differ from training noise."""
    models = list(_BASE.values())
    choice = torch.randint(len(models), (x.shape[0],), generator=g)
    out = torch.empty_like(x)
    for i, model in enumerate(models):
        idx = (choice == i).nonzero().flatten()
        if len(idx):
            out[idx] = model.fn(x[idx], g, level[idx])
    return out


NOISES: dict[str, NoiseModel] = {
    **_BASE,
    "mix": NoiseModel("mix", mix, "l1", "a random model above and strength per image (blind default)"),
}


def noise_names() -> list[str]:
    return list(NOISES)


def get_noise(name: str) -> NoiseModel:
    try:
        return NOISES[name]
    except KeyError:
        raise ValueError(f"unknown noise {name!r}; choose one of: {', '.join(NOISES)}") from None


def corrupt(clean: torch.Tensor, noise: str, generator: torch.Generator,
            level: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Corrupt uint8 images (N, C, H, W) in [0, 255]; returns uint8. The strength is drawn per image in ``level``."""
    model = get_noise(noise)
    x = clean.float() / 255.0
    lv = _uniform(x.shape[0], level[0], level[1], generator)
    y = model.fn(x, generator, lv)
    return (y.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
