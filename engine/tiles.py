"""Whole photographs through ``Model.predict`` in overlapping tiles: memory bounded by the tile size, no seams.

Each tile is a core of ``tile`` x ``tile`` pixels plus a ``margin`` of context on every side that has image there;
the network sees the core with its context, and only the core is kept. With a margin wider than the network's
receptive field (at most 26 px for Miniproject_1's U-Net, less for Miniproject_2) every kept pixel saw exactly what it
would have seen in one pass over the whole image, and tiles start on multiples of ``ALIGN`` so pooling and stride-2
grids line up with the whole image's: the cores fit together with no seam, equal to the untiled output up to float
rounding (``tests/test_photos.py`` checks 1e-4). Only the input, the output and one tile's activations are in memory.
A network that sees further (a Miniproject_1 U-Net of four levels or more) gets the margin its receptive field needs.
``predict_self_ensemble`` averages the passes over the image's 8 rotations and mirror images.
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


def context(model) -> tuple[int, int]:
    """(margin, align) that tiles of ``model`` need: its network's receptive radius (``receptive_radius``, where it
    says one; a deeper Miniproject_1 U-Net sees further than ``MARGIN``) and the multiple its poolings line up on
    (``multiple``), each at least this module's default, the margin a multiple of the alignment."""
    net = getattr(model, "net", None)
    align = max(ALIGN, int(getattr(net, "multiple", 1)))
    radius = max(MARGIN, int(getattr(net, "receptive_radius", 0)))
    return -(-radius // align) * align, align


@torch.no_grad()
def predict_tiled(model, image: torch.Tensor, tile: int = TILE, margin: int | None = None,
                  scale: float = 1.0) -> torch.Tensor:
    """Denoise one image (3, H, W) with ``model.predict`` tile by tile; ``image * scale`` must be in [0, 255]
    (``scale=255`` for [0, 1] images: no scaled copy of the whole image). ``margin`` None: the model's
    (``context``). Returns float (3, H, W) in [0, 255]."""
    need, align = context(model)
    margin = need if margin is None else margin
    if tile % align or margin % align or tile < align:
        raise ValueError(f"tile ({tile}) and margin ({margin}) must be positive multiples of {align}")
    _, h, w = image.shape
    out = torch.empty(3, h, w)
    for y0, y1, cy0, cy1 in _spans(h, tile, margin):
        for x0, x1, cx0, cx1 in _spans(w, tile, margin):
            patch = image[None, :, y0:y1, x0:x1].float() * scale
            pred = model.predict(patch)[0].cpu()
            out[:, cy0:cy1, cx0:cx1] = pred[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out


DIHEDRAL = tuple((k, flip) for k in range(4) for flip in (False, True))  # quarter turns, then a mirror


@torch.no_grad()
def predict_self_ensemble(model, image: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``predict_tiled`` on each of the image's 8 rotations and mirror images, each output turned back, averaged: the
    geometric self-ensemble (Timofte et al., CVPR 2016; EDSR+ in Lim et al., 2017). Eight times the time of one pass
    and one more image in memory; the noise is the same in every pass, so what averages out is the network's own
    error, not the noise. Returns float (3, H, W) in [0, 255]."""
    out = torch.zeros(image.shape)
    for k, flip in DIHEDRAL:
        seen = torch.rot90(image, k, (1, 2))
        pred = predict_tiled(model, (seen.flip(2) if flip else seen).contiguous(), scale=scale)
        out += torch.rot90(pred.flip(2) if flip else pred, -k, (1, 2))
    return out.div_(len(DIHEDRAL))


def predict_photo(model, image: torch.Tensor, scale: float = 1.0, self_ensemble: bool = False) -> torch.Tensor:
    """One pass of ``predict_tiled``, or the 8 of ``predict_self_ensemble``."""
    return (predict_self_ensemble if self_ensemble else predict_tiled)(model, image, scale=scale)
