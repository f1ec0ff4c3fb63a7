"""Sample patches, uint8 images (K, 3, H, W) shown as noisy / denoised / clean, in each form they travel: a numpy
array (what the widgets draw: a viewer needs no torch), raw bytes with their shape (the store's samples table), a
JSON object (the control socket, a sweep trial's report to its driver). One codec for all of them."""
from __future__ import annotations

import base64
import math

import numpy

from .errors import N2NError


class PatchError(N2NError, ValueError):
    """Patches that arrived damaged (a shape that does not match the bytes, data that is not base64)."""


def as_array(patches) -> numpy.ndarray:
    """A torch tensor (on any device) or a numpy array as a numpy uint8 array (no copy when it is one already)."""
    if hasattr(patches, "detach"):
        patches = patches.detach().cpu().numpy()
    return numpy.asarray(patches, dtype=numpy.uint8)


def to_bytes(patches) -> tuple[str, bytes]:
    """``("K,3,H,W", raw bytes)``."""
    a = as_array(patches)
    return ",".join(map(str, a.shape)), a.tobytes()


def from_bytes(raw: bytes, shape: str | list[int]) -> numpy.ndarray:
    """The array of ``to_bytes``'s output; PatchError when the bytes do not fill the shape."""
    try:
        dims = [int(s) for s in (shape.split(",") if isinstance(shape, str) else shape)]
    except (TypeError, ValueError):
        raise PatchError("damaged sample patches") from None
    if any(s < 0 for s in dims) or len(raw) != math.prod(dims):
        raise PatchError("damaged sample patches")
    return numpy.frombuffer(bytearray(raw), dtype=numpy.uint8).reshape(dims)


def to_json(patches) -> dict | None:
    """``{"shape": [K, 3, H, W], "data": base64 of the bytes}``, None for None."""
    if patches is None:
        return None
    shape, raw = to_bytes(patches)
    return {"shape": [int(s) for s in shape.split(",")], "data": base64.b64encode(raw).decode("ascii")}


def from_json(d) -> numpy.ndarray | None:
    """The array of ``to_json``'s output; None for anything but an object; PatchError when it is damaged."""
    if not isinstance(d, dict):
        return None
    try:
        raw = base64.b64decode(d["data"], validate=True)
        shape = list(d["shape"])
    except (KeyError, TypeError, ValueError):
        raise PatchError("damaged sample patches") from None
    return from_bytes(raw, shape)
