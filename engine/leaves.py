"""The ``leaves`` data source: procedural dead-leaves crops, seeded and unbounded.

The dead-leaves model stacks occluding shapes whose radii have density ~ r^-3 (the scale-invariant choice), so every
octave of size covers about the same share of the picture, as in photographs; networks trained on such images denoise
photographs nearly as well as ones trained on photographs (Achddou, Gousseau, Ladjal, "Synthetic images as a
regularity prior for image restoration neural networks", SSVM 2021).

Each crop is drawn directly at twice its size and area-downsampled (soft, camera-like edges): a background leaf, then
shapes painted back to front (discs, ellipses, rotated rectangles), each with a muted colour, a linear shading and a
faint oriented texture; a slight blur on some crops. The work is vectorised over a chunk of crops: for every shape
slot, only a window around each crop's shape is tested (small shapes are the many), the front-most slot per pixel is
kept as an index, and the colours are computed once from that index.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .specs import CROP

# shape slots per size octave, radii in crop pixels for a 32-pixel crop: (smallest, largest, slots). The counts make
# each octave paint about the same area, as the r^-3 law does; each slot is used with a per-crop, per-octave chance.
BANDS = ((1.5, 3.0, 40), (3.0, 6.0, 12), (6.0, 12.0, 4), (12.0, 24.0, 2), (24.0, 64.0, 2))
CHUNK = 256  # crops drawn together: bounds the memory (about 40 MB of work per chunk)
F_COUNT = 11  # per-shape features: rgb, centre y x, shading y x, texture amplitude, frequency y x, phase


def leaves_crops(n: int, generator: torch.Generator, size: int = CROP) -> torch.Tensor:
    """``n`` dead-leaves crops, uint8 (n, 3, size, size); the same generator state gives the same crops."""
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        out[start:start + k] = _chunk(k, size, generator)
    return out


def _power_law(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Inverse-CDF sample of a density ~ r^-3 on [lo, hi]."""
    return (lo ** -2 - u * (lo ** -2 - hi ** -2)) ** -0.5


def _colours(c: int, k: int, g: torch.Generator) -> torch.Tensor:
    """(c, k, 3) muted colours: dark tones more often, saturation mostly low, as in photographs."""
    grey = torch.rand(c, k, 1, generator=g) ** 1.4
    sat = torch.rand(c, k, 1, generator=g) ** 1.5 * 0.6
    return (grey + sat * (torch.rand(c, k, 3, generator=g) - 0.5)).clamp_(0, 1)


def _chunk(c: int, size: int, g: torch.Generator) -> torch.Tensor:
    S = 2 * size                         # drawn at twice the size, area-downsampled at the end
    scale = 2 * size / 32                # band radii are for a 32-pixel crop
    radii, windows, active = [], [], []
    for lo, hi, slots in BANDS:
        r = _power_law(torch.rand(c, slots, generator=g), lo * scale, hi * scale)
        chance = 0.25 + 0.75 * torch.rand(c, 1, generator=g)   # how crowded this crop is in this octave
        radii.append(r)
        active.append(torch.rand(c, slots, generator=g) < chance)
        windows += [min(S, 2 * math.ceil(hi * scale) + 2)] * slots
    r, on = torch.cat(radii, 1), torch.cat(active, 1)           # (c, K)
    K = r.shape[1]
    order = torch.randperm(K, generator=g)                       # depth order of the slots (random per chunk)
    r, on, windows = r[:, order], on[:, order], [windows[i] for i in order.tolist()]
    centre = torch.rand(c, K, 2, generator=g) * (S + r[..., None]) - r[..., None] / 2
    angle = torch.rand(c, K, generator=g) * math.pi
    aspect = 0.35 + 0.65 * torch.rand(c, K, generator=g) ** 0.5
    rect = torch.rand(c, K, generator=g) < 0.3

    # the front-most slot at each pixel (0: the background leaf), on a canvas padded so that windows stay inside
    P = max((w for w in windows if w < S), default=0) // 2 + S // 4 + 2
    Sp = S + 2 * P
    top = torch.zeros(c * Sp * Sp, dtype=torch.long)
    base = (torch.arange(c) * Sp * Sp)[:, None, None]
    view = top.view(c, Sp, Sp)[:, P:P + S, P:P + S]
    cos, sin = angle.cos(), angle.sin()
    for k in range(K):
        w = windows[k]
        cy, cx = centre[:, k, 0], centre[:, k, 1]
        if w < S:
            oy, ox = cy.floor().long() - w // 2, cx.floor().long() - w // 2
        else:
            oy = ox = torch.zeros(c, dtype=torch.long)
        ys, xs = oy[:, None] + torch.arange(w), ox[:, None] + torch.arange(w)        # (c, w), canvas pixels
        dy, dx = (ys + 0.5 - cy[:, None])[:, :, None], (xs + 0.5 - cx[:, None])[:, None, :]
        co, si = cos[:, k, None, None], sin[:, k, None, None]
        u = (dx * co + dy * si) / r[:, k, None, None]
        v = (dy * co - dx * si) / (r[:, k] * aspect[:, k])[:, None, None]
        inside = torch.where(rect[:, k, None, None], torch.maximum(u.abs(), v.abs()), u * u + v * v) <= 1
        inside &= on[:, k, None, None]
        if w < S:
            top[(base + (ys + P)[:, :, None] * Sp + (xs + P)[:, None, :])[inside]] = k + 1
        else:
            view.masked_fill_(inside, k + 1)

    # per-shape features, row 0 the background leaf (centred, shaded across the whole crop)
    feats = torch.empty(c, K + 1, F_COUNT)
    feats[..., 0:3] = _colours(c, K + 1, g)
    feats[:, 0, 3:5] = S / 2
    feats[:, 1:, 3:5] = centre
    span = torch.cat([torch.full((c, 1), S / 2), r], 1)[..., None]
    feats[..., 5:7] = torch.randn(c, K + 1, 2, generator=g) * 0.12 / span   # a gentle linear shading
    feats[..., 7] = torch.rand(c, K + 1, generator=g) ** 3 * 0.12           # texture: mostly faint
    period = 3.0 * scale * 8 ** torch.rand(c, K + 1, generator=g)            # log-uniform, a few pixels and up
    theta = torch.rand(c, K + 1, generator=g) * math.pi
    feats[..., 8], feats[..., 9] = 2 * math.pi * theta.sin() / period, 2 * math.pi * theta.cos() / period
    feats[..., 10] = torch.rand(c, K + 1, generator=g) * 2 * math.pi

    idx = view.reshape(c, S * S)
    px = torch.gather(feats, 1, idx[..., None].expand(-1, -1, F_COUNT))          # (c, S*S, F)
    y = (torch.arange(S, dtype=torch.float32) + 0.5).repeat_interleave(S)
    x = (torch.arange(S, dtype=torch.float32) + 0.5).repeat(S)
    shade = (y - px[..., 3]) * px[..., 5] + (x - px[..., 4]) * px[..., 6]
    shade += px[..., 7] * torch.sin(y * px[..., 8] + x * px[..., 9] + px[..., 10])
    img = (px[..., 0:3] + shade[..., None]).clamp_(0, 1).transpose(1, 2).reshape(c, 3, S, S)

    # a slight blur on some crops (out-of-focus, lens), then the area downsampling
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    amount = torch.rand(c, 1, 1, 1, generator=g)
    img = torch.lerp(img, blurred, amount)
    return (F.avg_pool2d(img, 2) * 255).round_().clamp_(0, 255).to(torch.uint8)
