"""Image files in and out: every read and write of a photograph goes through here.

``read_image`` turns a PNG, JPEG or TIFF of any mode (bilevel, grey, grey + alpha, palette, RGB, RGBA, CMYK, YCbCr,
16-bit) into a :class:`Picture`: float pixels in [0, 1] with one (grey) or three (colour) channels, the alpha channel
apart, and the bit depth of the file's samples. ``write_image`` writes a Picture back in the same mode and depth,
atomically (``engine.fileio``). Pillow does the decoding; 16-bit colour TIFFs go through ``tifffile`` (which
scikit-image brings), since Pillow keeps only 8 bits of them. Pillow cannot read or write 16-bit colour PNGs
exactly: reading one keeps its high byte (fine for training crops), and ``exact=True`` refuses it instead.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import N2NError, first_line
from .fileio import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000   # denoise takes larger photos only when asked (--allow-large): minutes each on a CPU
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
JPEG_QUALITY = 95


class ImageError(N2NError, ValueError):
    """An image file that cannot be read or written as asked; the message names the file and what is wrong."""


@dataclass
class Picture:
    pixels: torch.Tensor              # (C, H, W) float32 in [0, 1]; C = 1 (grey) or 3 (colour)
    alpha: torch.Tensor | None = None  # (H, W) float32 in [0, 1], or None
    bits: int = 8                     # depth of the file's samples: 8 or 16

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return tuple(self.pixels.shape[1:])

    def rgb(self) -> torch.Tensor:
        """(3, H, W) in [0, 1]: grey repeated, alpha dropped."""
        return self.pixels.expand(3, -1, -1).contiguous() if self.pixels.shape[0] == 1 else self.pixels


# ---------------------------------------------------------------------------------------------------------- reading

def _deep_colour(im) -> bool:
    """A 16-bit colour (or grey + alpha) file, which Pillow decodes to 8 bits per sample."""
    return im.mode in ("RGB", "RGBA", "LA") and any(";16" in str(t.args) for t in getattr(im, "tile", []) or [])


def _from_pillow(im, path: Path, exact: bool) -> tuple[np.ndarray, int]:
    """An (H, W, C) array (C = 1, 2, 3 or 4: grey, grey + alpha, RGB, RGBA) and its bit depth."""
    from PIL import ImageOps

    if _deep_colour(im):
        if im.format == "TIFF":
            import tifffile

            arr = tifffile.imread(path)
            if arr.dtype == np.uint16 and arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
                return arr, 16
        if exact:
            raise ImageError(f"{path}: a 16-bit colour {im.format} image, which Pillow reads only at 8 bits; "
                             "save it as a 16-bit TIFF")
    im.load()
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.array(im).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return arr[..., None], 16
    if mode == "F":
        raise ImageError(f"{path}: 32-bit float images are not supported (use 8 or 16 bits per sample)")
    if mode in ("1", "L"):
        target = "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        target = "RGBA"
    else:  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow converts each correctly (CMYK with its K)
        target = "RGB"
    arr = np.array(im.convert(target))
    return (arr[..., None] if arr.ndim == 2 else arr), 8


def image_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(width, height, frames) from the file's header, nothing decoded; ImageError when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: {'is a directory, not an image' if path.is_dir() else 'file not found'}")
    try:
        with _any_size(), Image.open(path) as im:
            return im.width, im.height, int(getattr(im, "n_frames", 1) or 1)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (unknown format, or the header is corrupt)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({str(e).strip()[:120] or type(e).__name__})") from None


class _any_size:
    """Pillow's decompression-bomb guard off, and its warning silenced, while reading a file whose size the caller
    has checked against its own, documented limit (``MAX_PIXELS``)."""

    def __enter__(self):
        import warnings

        from PIL import Image

        self._limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return self

    def __exit__(self, *exc):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self._limit
        self._warnings.__exit__(*exc)


def read_image(path: str | os.PathLike, *, exact: bool = False, any_size: bool = False) -> Picture:
    """Read any PNG / JPEG / TIFF. ``exact``: refuse a file whose samples would be read with less precision than
    they have (16-bit colour PNG) instead of reading its high byte. ``any_size``: the caller checked the size
    (``image_info``), so Pillow's own guard stays quiet. Raises :class:`ImageError` with one line."""
    import contextlib

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: {'is a directory, not an image' if path.is_dir() else 'file not found'}")
    try:
        with (_any_size() if any_size else contextlib.nullcontext()), Image.open(path) as im:
            arr, bits = _from_pillow(im, path, exact)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (unknown format, or the header is corrupt)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, KeyError) as e:
        detail = first_line(e, 120)
        raise ImageError(f"{path}: corrupt or truncated image ({detail})") from None
    raw = torch.from_numpy(arr.astype(np.int32) if bits == 16 else arr).permute(2, 0, 1)
    top = 65535.0 if bits == 16 else 255.0
    c = raw.shape[0]
    colour = 3 if c >= 3 else 1
    alpha = raw[colour].float().div_(top) if c in (2, 4) else None
    return Picture(raw[:colour].float().div_(top), alpha, bits)  # one float copy: bounded memory on big photos


# ---------------------------------------------------------------------------------------------------------- writing

def output_format(path: str | os.PathLike) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output format (use {', '.join(sorted(FORMATS))})")
    return fmt


def check_writable(path: str | os.PathLike, pic: Picture | None = None) -> str:
    """The Pillow/tifffile format for ``path``, or ImageError if it cannot hold ``pic`` as it is."""
    fmt = output_format(path)
    if pic is None:
        return fmt
    if fmt == "JPEG" and (pic.bits == 16 or pic.alpha is not None):
        what = "16-bit samples" if pic.bits == 16 else "an alpha channel"
        raise ImageError(f"{path}: JPEG cannot hold {what}; write a .png or .tif")
    if fmt != "TIFF" and pic.bits == 16 and (pic.pixels.shape[0] == 3 or pic.alpha is not None):
        raise ImageError(f"{path}: a 16-bit {'colour' if pic.pixels.shape[0] == 3 else 'grey + alpha'} image can "
                         f"only be written as TIFF (.tif); Pillow keeps 8 bits of it in {fmt}")
    return fmt


def _encode(pic: Picture, fmt: str) -> bytes:
    """The file's bytes: ``pic`` in format ``fmt`` ("PNG", "JPEG", "TIFF"), at its own depth and mode; ``fmt`` is
    one ``check_writable`` accepted for it."""
    from PIL import Image

    grey = pic.pixels.shape[0] == 1
    planes = pic.pixels if pic.alpha is None else torch.cat([pic.pixels, pic.alpha[None]])
    top = (1 << pic.bits) - 1
    arr = planes.clamp(0, 1).mul_(top).round_().permute(1, 2, 0).numpy()
    arr = arr.astype(np.uint16 if pic.bits == 16 else np.uint8)
    buf = io.BytesIO()
    if pic.bits == 16 and not (grey and pic.alpha is None):  # check_writable has made sure fmt is TIFF
        import tifffile

        tifffile.imwrite(buf, arr, photometric="minisblack" if grey else "rgb",
                         extrasamples=["unassalpha"] if pic.alpha is not None else None)
        return buf.getvalue()
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)  # L, I;16, LA, RGB or RGBA by shape and dtype
    im.save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_image(path: str | os.PathLike, pic: Picture) -> Path:
    """Write ``pic`` to ``path`` (format from the suffix) in its own mode and depth, atomically."""
    fmt = check_writable(path, pic)
    data = _encode(pic, fmt)
    return atomic_write(path, lambda f: f.write(data))
