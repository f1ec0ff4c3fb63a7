"""Whole photographs through ``Model.predict`` in overlapping tiles: memory bounded by the tile size, no seams.

Each tile is a core of ``tile`` x ``tile`` pixels plus a ``margin`` of context on every side that has image there;
the network sees the core with its context, and only the core is kept. With a margin wider than the network's
receptive field (about 24 px for Miniproject_1's U-Net, less for Miniproject_2) every kept pixel saw exactly what it
would have seen in one pass over the whole image, and tiles start on multiples of ``ALIGN`` so pooling and stride-2
grids line up with the whole image's: the cores fit together with no seam, equal to the untiled output up to float
rounding (``tests/test_photos.py`` checks 1e-4). Only the input, the output and one tile's activations are in memory.
"""
from __future__ import annotations

import torch

TILE = 512     # core side in pixels; one tile of Miniproject_1 takes about 0.3 GB of activations
MARGIN = 32    # context on each side of a core
ALIGN = 16     # tile starts are multiples of this (2^4: up to four poolings or stride-2 layers)


def _spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each tile's input and (start, stop) of its core along one axis."""
    spans = []
    for c0 in range(0, length, tile):
        c1 = min(c0 + tile, length)
        spans.append((max(0, c0 - margin), min(length, c1 + margin), c0, c1))
    return spans


@torch.no_grad()
def predict_tiled(model, image: torch.Tensor, tile: int = TILE, margin: int = MARGIN,
                  scale: float = 1.0) -> torch.Tensor:
    """Denoise one image (3, H, W) with ``model.predict`` tile by tile; ``image * scale`` must be in [0, 255]
    (``scale=255`` for [0, 1] images: no scaled copy of the whole image). Returns float (3, H, W) in [0, 255]."""
    if tile % ALIGN or margin % ALIGN or tile < ALIGN:
        raise ValueError(f"tile ({tile}) and margin ({margin}) must be positive multiples of {ALIGN}")
    _, h, w = image.shape
    out = torch.empty(3, h, w)
    for y0, y1, cy0, cy1 in _spans(h, tile, margin):
        for x0, x1, cx0, cx1 in _spans(w, tile, margin):
            patch = image[None, :, y0:y1, x0:x1].float() * scale
            pred = model.predict(patch)[0].cpu()
            out[:, cy0:cy1, cx0:cx1] = pred[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out
