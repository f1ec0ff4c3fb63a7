"""Data sources: ``course:DIR``, ``sample``, ``images:DIR``, ``leaves``, ``pypi`` and their mixtures, all in the
course's format.

A source yields a :class:`Dataset`: training pairs (two independently corrupted versions of the same images) and
validation pairs (noisy, clean), all uint8 tensors shaped (N, 3, H, W) in [0, 255], exactly like the course's
``train_data.pkl`` and ``val_data.pkl``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .fileio import torch_load_problem
from .images import IMAGE_SUFFIXES, ImageError, read_image
from .leaves import leaves_crops
from .noise import corrupt, corrupt_target, parse_noise

# the torch-free half of the data options lives in specs; these names stay importable from here
from .specs import (  # noqa: F401
    CROP,
    DataError,
    check_source,
    crop_problem,
    default_spec,
    not_a_folder,
    parse_sources,
    parse_spec,
    pypi_photos,
    shares,
    size_problem,
)

MIN_SIZE = 4             # smaller images hold no structure to learn (and Miniproject_1 pools twice)

# The photographs that ship inside scikit-image, split by image so validation never sees a training photograph.
SAMPLE_TRAIN = [
    "astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "motorcycle_left.png",
    "coins.png", "moon.png", "grass.png", "gravel.png", "cell.png", "clock_motion.png", "page.png", "text.png",
    "color.png", "microaneurysms.png",
]
SAMPLE_VAL = ["coffee.png", "chelsea.png", "camera.png", "brick.png"]


@dataclass
class Dataset:
    train_input: torch.Tensor   # (N, 3, H, W) uint8, first noisy version
    train_target: torch.Tensor  # (N, 3, H, W) uint8, second, independent noisy version
    val_input: torch.Tensor     # (M, 3, H, W) uint8, noisy
    val_target: torch.Tensor    # (M, 3, H, W) uint8, clean
    source: str
    noise: str | None           # None for course data, whose noise is unknown
    train_clean: torch.Tensor | None = None  # the clean images behind the training pairs (generated sources only)
    train_leaves: torch.Tensor | None = None  # bool (N,): which clean images are dead leaves (new ones can be drawn)

    def __len__(self) -> int:
        return len(self.train_input)

    def head(self, n_train: int | None = None, n_val: int | None = None) -> "Dataset":
        """The first ``n_train`` training and ``n_val`` validation pairs (None: all), with what stands behind them."""
        def cut(t, n):
            return t if t is None or n is None else t[:n]

        return replace(self, train_input=cut(self.train_input, n_train), train_target=cut(self.train_target, n_train),
                       val_input=cut(self.val_input, n_val), val_target=cut(self.val_target, n_val),
                       train_clean=cut(self.train_clean, n_train), train_leaves=cut(self.train_leaves, n_train))


# ----------------------------------------------------------------------------------------------------- course data

def _check_pair(obj, path: Path, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataError(f"{path}: expected a tuple of two tensors ({what}), got {type(obj).__name__}"
                        + (f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else ""))
    a, b = obj
    for name, t in (("first", a), ("second", b)):
        if not isinstance(t, torch.Tensor):
            raise DataError(f"{path}: the {name} element is a {type(t).__name__}, not a tensor")
        if t.dim() != 4 or t.shape[1] != 3:
            raise DataError(f"{path}: the {name} tensor has shape {tuple(t.shape)}, expected N x 3 x H x W")
        if t.dtype != torch.uint8 and not t.dtype.is_floating_point:
            raise DataError(f"{path}: the {name} tensor has dtype {t.dtype}, expected uint8 or float")
    if a.shape != b.shape:
        raise DataError(f"{path}: the two tensors differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise DataError(f"{path}: holds 0 image pairs")
    if min(a.shape[2:]) < MIN_SIZE:
        raise DataError(f"{path}: images are {a.shape[2]}x{a.shape[3]}, at least {MIN_SIZE}x{MIN_SIZE} are needed")
    return _as_uint8(a, path), _as_uint8(b, path)


def _as_uint8(t: torch.Tensor, path: Path) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t
    if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 255):
        raise DataError(f"{path}: float values must be finite and in [0, 255]")
    return t.round().to(torch.uint8)


def load_pair_file(path: str | os.PathLike, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one of the course's .pkl files safely (weights_only) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding more than tensors
        raise DataError(f"{path}: not a readable PyTorch tensor file ({torch_load_problem(e)})") from None
    return _check_pair(obj, path, what)


def load_course(directory: str | os.PathLike, n_train: int | None = None, n_val: int | None = None) -> Dataset:
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: no such directory (course data needs train_data.pkl and val_data.pkl)")
    tin, ttg = load_pair_file(d / "train_data.pkl", "noisy_imgs_1, noisy_imgs_2")
    vin, vtg = load_pair_file(d / "val_data.pkl", "noisy_imgs, clean_imgs")
    if n_train is not None:
        tin, ttg = tin[:n_train], ttg[:n_train]
    if n_val is not None:
        vin, vtg = vin[:n_val], vtg[:n_val]
    return Dataset(tin, ttg, vin, vtg, f"course:{d}", None)


# --------------------------------------------------------------------------------------------- photographs to crops

def _read_image(path: Path) -> torch.Tensor:
    """Read a photograph as a float (3, H, W) tensor in [0, 1] (``engine.images``): grey images are repeated, alpha
    is dropped, every other mode (CMYK, palette, 16-bit...) converted to RGB."""
    try:
        return read_image(path).rgb()
    except ImageError as e:
        raise DataError(str(e)) from None


SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # area-downsampling factors, log-spaced


def _pyramid(im: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The photograph area-downsampled by each of ``SCALES`` that still holds a ``size`` x ``size`` crop."""
    h, w = im.shape[1:]
    levels = []
    for s in SCALES:
        hh, ww = round(h / s), round(w / s)
        if min(hh, ww) < size:
            break
        levels.append(im if s == 1.0 else F.interpolate(im[None], size=(hh, ww), mode="area")[0])
    return levels or [F.interpolate(im[None], size=(max(h, size), max(w, size)), mode="area")[0]]


def make_crops(images: list[torch.Tensor], n: int, generator: torch.Generator, size: int = CROP,
               pyramids: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` crops of photographs area-downsampled by a random factor in ``SCALES``, each
    under one of the 8 flips/rotations at random; photographs are picked in proportion to the square root of
    their area, so that one huge photograph does not crowd out the others.
    Returns uint8 (n, 3, size, size). Vectorised per (photograph, scale): 50 000 crops take about a second."""
    if pyramids is None:
        pyramids = [_pyramid(im, size) for im in images]
    weights = torch.tensor([float(im.shape[1] * im.shape[2]) ** 0.5 for im in images])
    which = torch.multinomial(weights, n, replacement=True, generator=generator)
    level_u = torch.rand(n, generator=generator)
    pos = torch.rand(n, 2, generator=generator)
    dihedral = torch.randint(8, (n,), generator=generator)
    out = torch.empty(n, 3, size, size)
    ar = torch.arange(size)
    for i, levels in enumerate(pyramids):
        mine = (which == i).nonzero().flatten()
        level = (level_u[mine] * len(levels)).long()
        for lv, im in enumerate(levels):
            idx = mine[level == lv]
            if not len(idx):
                continue
            h, w = im.shape[1:]
            y0 = (pos[idx, 0] * (h - size + 1)).long()
            x0 = (pos[idx, 1] * (w - size + 1)).long()
            rows, cols = y0[:, None] + ar, x0[:, None] + ar               # (k, size) each
            out[idx] = im[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # (k, 3, size, size)
    for d in range(1, 8):
        sel = (dihedral == d).nonzero().flatten()
        if len(sel):
            t = out[sel].flip(-1) if d & 1 else out[sel]
            out[sel] = torch.rot90(t, d >> 1, (2, 3))
    return (out * 255.0).round_().clamp_(0, 255).to(torch.uint8)


VAL_SEED = 1_000_003  # validation crops come from their own stream: other images than the training ones


def _photos_to_dataset(train, val, source: str, noise: str, seed: int, n_train: int, n_val: int,
                       crop: int = CROP) -> Dataset:
    """``train`` and ``val`` are (photographs, pyramids) pairs, ``train``'s pyramids made for ``crop`` px crops,
    ``val``'s for the course's 32 (validation crops are always 32 px, so that runs compare)."""
    noise = str(parse_noise(noise))  # fail on a bad spec before any work
    clean_train = make_crops(train[0], n_train, torch.Generator().manual_seed(seed), size=crop, pyramids=train[1])
    clean_val = make_crops(val[0], n_val, torch.Generator().manual_seed(seed + VAL_SEED), pyramids=val[1])
    return _corrupt(clean_train, clean_val, source, noise, seed)


def _corrupt(clean_train: torch.Tensor, clean_val: torch.Tensor, source: str, noise: str, seed: int) -> Dataset:
    # three independent streams: input noise, target noise, validation noise
    tin = corrupt(clean_train, noise, torch.Generator().manual_seed(seed * 3 + 1))
    ttg = corrupt(clean_train, noise, torch.Generator().manual_seed(seed * 3 + 2))
    vin = corrupt(clean_val, noise, torch.Generator().manual_seed(seed * 3 + 3))
    return Dataset(tin, ttg, vin, clean_val, source, noise, clean_train)


def with_float_targets(ds: Dataset, seed: int) -> Dataset:
    """``ds`` with float training targets (``noise.corrupt_target``: not rounded, not clipped) drawn on its clean
    images from the uint8 targets' own seed stream; inputs and validation pairs unchanged. DataError when ``ds``
    keeps no clean images (course data)."""
    if ds.train_clean is None or ds.noise is None:
        raise DataError(f"{ds.source} has no clean images behind its training pairs to draw float targets on")
    targets = corrupt_target(ds.train_clean, ds.noise, torch.Generator().manual_seed(seed * 3 + 2))
    return replace(ds, train_target=targets)


def load_leaves(noise: str = "mix", seed: int = 0, n_train: int = 20000, n_val: int = 1000,
                crop: int = CROP) -> Dataset:
    """Procedural dead-leaves crops (``engine.leaves``); validation crops from their own seed stream."""
    noise = str(parse_noise(noise))
    clean_train = leaves_crops(n_train, torch.Generator().manual_seed(seed), size=crop)
    clean_val = leaves_crops(n_val, torch.Generator().manual_seed(seed + VAL_SEED))
    ds = _corrupt(clean_train, clean_val, "leaves", noise, seed)
    ds.train_leaves = torch.ones(n_train, dtype=torch.bool)
    return ds


def load_mixture(spec: str, noise: str = "mix", seed: int = 0, n_train: int = 20000, n_val: int = 1000,
                 crop: int = CROP) -> Dataset:
    """A mixture such as ``sample@0.3+leaves@0.7``: each source gives its share of the training pairs and, in the same
    shares, of the validation pairs (so validation measures the distribution trained on, as for a single source),
    exact counts by largest remainders; the pairs are shuffled together (seeded)."""
    sources = parse_sources(spec)
    weights = [w for _, _, w in sources]
    parts = []
    for i, ((kind, arg, _), nt, nv) in enumerate(zip(sources, shares(n_train, weights), shares(n_val, weights))):
        if nt or nv:  # each source's own seed: no two sources share a noise stream
            one = f"{kind}:{arg}" if arg else kind
            parts.append((nt, nv, _load_one(one, noise, seed + 7919 * i, max(nt, 1), max(nv, 1), crop)))
    g = torch.Generator().manual_seed(seed + 2 * VAL_SEED)
    train_order, val_order = torch.randperm(n_train, generator=g), torch.randperm(n_val, generator=g)

    def cat(field, n, order):
        return torch.cat([getattr(ds, field)[:k] for k, ds in ((p[n], p[2]) for p in parts)])[order]

    for _, _, ds in parts:
        if ds.train_leaves is None:
            ds.train_leaves = torch.zeros(len(ds), dtype=torch.bool)
    return Dataset(cat("train_input", 0, train_order), cat("train_target", 0, train_order),
                   cat("val_input", 1, val_order), cat("val_target", 1, val_order), spec, str(parse_noise(noise)),
                   cat("train_clean", 0, train_order), cat("train_leaves", 0, train_order))


def sample_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


@functools.lru_cache(maxsize=None)
def _sample_images(split: str) -> list[torch.Tensor]:
    """Decoded sample photographs, read once per process."""
    return [_read_image(sample_dir() / f) for f in (SAMPLE_TRAIN if split == "train" else SAMPLE_VAL)]


@functools.lru_cache(maxsize=None)
def _sample_photos(split: str, size: int = CROP) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """The sample photographs and their pyramids for ``size`` px crops, made once per process."""
    images = _sample_images(split)
    return images, [_pyramid(im, size) for im in images]


def load_sample(noise: str = "mix", seed: int = 0, n_train: int = 20000, n_val: int = 1000,
                crop: int = CROP) -> Dataset:
    return _photos_to_dataset(_sample_photos("train", crop), _sample_photos("val"), "sample", noise, seed, n_train,
                              n_val, crop)


def load_images(directory: str | os.PathLike, noise: str = "mix", seed: int = 0, n_train: int = 20000,
                n_val: int = 1000, crop: int = CROP) -> Dataset:
    d = Path(directory)
    if not d.is_dir():
        raise DataError(not_a_folder(d))
    return load_photo_files(image_files(d), d, f"images:{d}", noise, seed, n_train, n_val, crop)


def load_photo_files(files: list[Path], root: Path | None, source: str, noise: str = "mix", seed: int = 0,
                     n_train: int = 20000, n_val: int = 1000, crop: int = CROP) -> Dataset:
    """Crops of photograph files (named relative to ``root`` in errors): every fifth photo (at least one) is held out
    for validation, so the split is by image."""
    where = root if root is not None else source
    if len(files) < 2:
        raise DataError(f"{where}: need at least 2 PNG/JPEG/TIFF images (one for validation), found {len(files)}")
    imgs = [_read_image(p) for p in files]
    small = [str(p.relative_to(root) if root else p) for p, im in zip(files, imgs) if min(im.shape[1:]) < CROP]
    if small:
        raise DataError(f"{where}: images smaller than {CROP}x{CROP}: {', '.join(small[:3])}")
    n_hold = max(1, len(imgs) // 5)
    train, val = imgs[n_hold:], imgs[:n_hold]
    return _photos_to_dataset((train, [_pyramid(im, crop) for im in train]), (val, [_pyramid(im, CROP) for im in val]),
                              source, noise, seed, n_train, n_val, crop)


def image_files(d: Path) -> list[Path]:
    """The photographs in folder ``d`` and its sub-folders, sorted by path (hidden files and folders skipped)."""
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(d).parts))


# ------------------------------------------------------------------------------------------------------ dispatcher

def load_data(spec: str = "sample", noise: str = "mix", seed: int = 0, n_train: int | None = None,
              n_val: int | None = None, crop: int = CROP) -> Dataset:
    """Load a data source. ``noise`` is ignored for course data (it comes noisy); sizes default to 20 000 / 1 000
    generated pairs, or everything in the course files. Generated training crops are ``crop`` px a side
    (``crop_problem``), validation crops 32 always; course data is 32 px and takes no other."""
    for name, v in (("n_train", n_train), ("n_val", n_val)):
        if v is not None and v < 1:
            raise DataError(f"{name} must be at least 1, got {v}")
    kind, arg = parse_spec(spec)
    problem = crop_problem(crop, kind != "course")
    if problem:
        raise DataError(problem)
    if kind != "course":
        problem = size_problem(n_train or 20000, crop) or size_problem((n_train or 20000) + (n_val or 1000))
        if problem:
            raise DataError(problem)
    if kind == "course":
        return load_course(arg, n_train, n_val)
    if kind == "mixture":
        return load_mixture(spec, noise, seed, n_train or 20000, n_val or 1000, crop)
    return _load_one(spec, noise, seed, n_train or 20000, n_val or 1000, crop)


def _load_one(spec: str, noise: str, seed: int, n_train: int, n_val: int, crop: int = CROP) -> Dataset:
    kind, arg = parse_spec(spec)
    if kind == "sample":
        return load_sample(noise, seed, n_train, n_val, crop)
    if kind == "leaves":
        return load_leaves(noise, seed, n_train, n_val, crop)
    if kind == "pypi":
        return load_photo_files(pypi_photos(), None, "pypi", noise, seed, n_train, n_val, crop)
    return load_images(arg, noise, seed, n_train, n_val, crop)
