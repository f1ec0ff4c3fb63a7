"""Noise models for Noise2Noise training.

Each model corrupts a batch of clean images independently per image, with a strength drawn per image, and names the
loss the Noise2Noise paper (Lehtinen et al., 2018) pairs with it: L2 for zero-mean noise (the mean of the noisy
targets is the clean image), L1 where a minority of pixels is replaced (the median survives), L0 (annealed) for
the same at higher density.

All functions take float images in [0, 1] shaped (N, C, H, W), a ``torch.Generator`` and a per-image strength in
the model's own unit (sigma of 255, photons, fraction of pixels, block size). A noise is named by a spec
(``parse_noise``): a bare name draws the strength per image from the model's range, ``NAME:LEVEL`` fixes it
(``gaussian:25``, ``poisson:30``, ``impulse:0.1``, ``pixelate:3``, ``blocky:0.1``). ``corrupt`` is the entry point
for uint8 images in [0, 255], ``corrupt_float`` for float ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .specs import FAMILIES, NoiseFamily, NoiseSpec, parse_noise  # the torch-free half of noise options

NoiseFn = Callable[[torch.Tensor, torch.Generator, torch.Tensor], torch.Tensor]


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def gaussian(x: torch.Tensor, g: torch.Generator, sigma: torch.Tensor) -> torch.Tensor:
    """Additive white Gaussian noise of standard deviation ``sigma`` on the 0-255 scale."""
    return x + torch.randn(x.shape, generator=g).mul_(_per_image(sigma / 255.0))


def poisson(x: torch.Tensor, g: torch.Generator, photons: torch.Tensor) -> torch.Tensor:
    """Poisson (shot) noise: counts ~ Poisson(photons * x) / photons; fewer photons, more noise."""
    lam = _per_image(photons)
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


def impulse(x: torch.Tensor, g: torch.Generator, fraction: torch.Tensor) -> torch.Tensor:
    """Random-valued impulse noise in 1-2 px blocks: about ``fraction`` of the pixels get a uniformly random colour."""
    colours = torch.rand(x.shape, generator=g)
    return _blocks(x, g, fraction, colours)


def pixelate(x: torch.Tensor, g: torch.Generator, block: torch.Tensor) -> torch.Tensor:
    """Pixelation with a random phase: average over ``block`` x ``block`` squares whose grid is shifted at random."""
    n, c, h, w = x.shape
    block = block.long()
    oy = (torch.rand(n, generator=g) * block).long()
    ox = (torch.rand(n, generator=g) * block).long()
    out = torch.empty_like(x)
    keys = torch.stack([block, oy, ox], 1)
    for b, py, px in keys.unique(dim=0).tolist():
        idx = (keys == torch.tensor([b, py, px])).all(1).nonzero().flatten()
        # shift the grid by padding (py, px) in front, pool, blow back up, and crop back to (h, w)
        padded = F.pad(x[idx], (px, b, py, b), mode="replicate")
        hh, ww = (h + py) // b * b + b, (w + px) // b * b + b
        pooled = F.avg_pool2d(padded[:, :, :hh, :ww], b)
        up = F.interpolate(pooled, scale_factor=b, mode="nearest")
        out[idx] = up[:, :, py:py + h, px:px + w]
    return out


def _blocky_block(fraction: torch.Tensor) -> torch.Tensor:
    """The pixelation block that goes with a fraction of wrong-colour pixels: 2 px up to 8%, 3 px up to 14%, then 4."""
    level = (fraction - 0.02) / 0.18
    return (2 + (level * 2.999).floor()).clamp(2, 4)


def blocky(x: torch.Tensor, g: torch.Generator, fraction: torch.Tensor) -> torch.Tensor:
    """What the course data looks like: a pixelated image with scattered 1-2 px blocks of wrong colour on top,
    covering about ``fraction`` of the pixels (the pixelation coarsens with it)."""
    low = pixelate(x, g, _blocky_block(fraction))
    return _blocks(low, g, fraction, torch.rand(x.shape, generator=g))


@dataclass(frozen=True)
class NoiseModel(NoiseFamily):
    """A noise family (``engine.specs``) with the function that applies it."""
    fn: NoiseFn = field(kw_only=True)
    strength: Callable[[torch.Tensor], torch.Tensor] = field(kw_only=True)  # a level in [0, 1] -> ``fn``'s argument


def _model(name: str, fn: NoiseFn, strength: Callable[[torch.Tensor], torch.Tensor]) -> NoiseModel:
    return NoiseModel(**vars(FAMILIES[name]), fn=fn, strength=strength)


_BASE = {
    "gaussian": _model("gaussian", gaussian, lambda lv: lv * 50.0),
    "poisson": _model("poisson", poisson, lambda lv: 50.0 - 45.0 * lv),
    "impulse": _model("impulse", impulse, lambda lv: 0.02 + 0.38 * lv),
    "pixelate": _model("pixelate", pixelate, lambda lv: 2 + (lv * 2.999).floor()),
    "blocky": _model("blocky", blocky, lambda lv: 0.02 + 0.18 * lv),
}


def mix(x: torch.Tensor, g: torch.Generator, level: torch.Tensor) -> torch.Tensor:
    """A random model and strength per image: the blind default, since test noise may differ from training noise."""
    models = list(_BASE.values())
    choice = torch.randint(len(models), (x.shape[0],), generator=g)
    out = torch.empty_like(x)
    for i, model in enumerate(models):
        idx = (choice == i).nonzero().flatten()
        if len(idx):
            out[idx] = model.fn(x[idx], g, model.strength(level[idx]))
    return out


NOISES: dict[str, NoiseModel] = {**_BASE, "mix": _model("mix", mix, lambda lv: lv)}


def fixed_specs(level: float = 0.5) -> dict[str, str]:
    """Each base family at one fixed strength (its ``NAME:VALUE`` spec: at 0.5, ``gaussian:25``, ``poisson:27.5``,
    ``impulse:0.21``, ``pixelate:3``, ``blocky:0.11``), then bare ``mix``: the rows of the per-family tables."""
    specs = {name: f"{name}:{round(m.strength(torch.tensor([level])).item(), 4):g}" for name, m in _BASE.items()}
    return {**specs, "mix": "mix"}


def get_noise(spec: "str | NoiseSpec") -> NoiseModel:
    return NOISES[parse_noise(spec).name]


def corrupt_float(x: torch.Tensor, noise: "str | NoiseSpec", generator: torch.Generator,
                  level: tuple[float, float] = (0.0, 1.0), clip: bool = True) -> torch.Tensor:
    """Corrupt float images (N, C, H, W) in [0, 1]; returns float, clipped to [0, 1] unless ``clip`` is False. A spec
    with a fixed level applies it to every image; a bare name draws the strength per image in ``level`` (a range
    within [0, 1])."""
    spec = parse_noise(noise)
    model = NOISES[spec.name]
    if spec.level is None:
        strength = model.strength(_uniform(x.shape[0], level[0], level[1], generator))
    else:
        strength = torch.full((x.shape[0],), spec.level)
    y = model.fn(x, generator, strength)  # every fn returns a new tensor
    return y.clamp_(0.0, 1.0) if clip else y


def corrupt(clean: torch.Tensor, noise: "str | NoiseSpec", generator: torch.Generator,
            level: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Corrupt uint8 images (N, C, H, W) in [0, 255]; returns uint8 (see ``corrupt_float``)."""
    y = corrupt_float(clean.float() / 255.0, noise, generator, level)
    return (y * 255.0).round().to(torch.uint8)


def corrupt_target(clean: torch.Tensor, noise: "str | NoiseSpec", generator: torch.Generator,
                   level: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """A float Noise2Noise target of uint8 images (N, C, H, W): ``corrupt``'s noise, neither rounded to 8 bits nor
    clipped to [0, 255] (the paper's targets: clipping biases a zero-mean noise's mean near black and white).
    Returns float32 on the 0-255 scale, below 0 and above 255 where the noise takes it."""
    return corrupt_float(clean.float() / 255.0, noise, generator, level, clip=False).mul_(255.0)
