"""What a run's data and noise options mean, without loading anything: the data specs (``sample``, ``course:DIR``,
``images:DIR``, ``leaves``, ``pypi`` and mixtures such as ``sample+leaves@3``), the size limits of generated data, and
the noise families with their ``NAME:LEVEL`` forms.

Nothing here imports torch, so that what only reads or checks options (the command line, ``RunConfig``, a viewer
attaching to a live run) starts fast; ``engine.data`` and ``engine.noise`` hold the work itself and re-export these.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import N2NError

CROP = 32                # side of the generated training and validation crops (the course's)
MAX_CROP = 256           # training crops may be larger (--crop): whole-photo models learn from wider context
MAX_PAIRS = 10_000_000   # generated pairs per set: beyond this the count is surely a typo
# peak bytes per generated pair: the float crop plus the float work of corrupting it twice (measured: about 5 floats)
BYTES_PER_PAIR = 5 * 3 * CROP * CROP * 4


class DataError(N2NError, ValueError):
    """A data source that cannot be used; the message names the file and what is wrong."""


# ------------------------------------------------------------------------------------------------------ data specs

SPEC_FORMS_DATA = ("sample, leaves, pypi, course:DIR, images:DIR, or a mixture such as sample+leaves or "
                   "sample@0.3+leaves@0.7")
_NAMED = ("sample", "leaves", "pypi")           # the sources that take no argument
# a mixture splits only on a '+' that starts a known source, so a folder named 'a+b' stays one images:DIR
_SPLIT = re.compile(rf"\+(?=(?:{'|'.join(_NAMED)})(?:@[^+]*)?(?:\+|$)|(?:course|images):)")
_WEIGHT = re.compile(r"@([^@/]*)$")          # sample@W, leaves@W
_DIR_WEIGHT = re.compile(r"@(\d+\.?\d*|\.\d+)$")  # images:DIR@W: only a plain number (a folder may hold an '@')


def _parse_one(spec: str, whole: str) -> tuple[str, str | None]:
    kind, sep, arg = spec.partition(":")
    if kind in _NAMED and not sep:
        return kind, None
    if kind in ("course", "images") and sep and arg:
        return kind, arg
    raise DataError(f"bad data spec {whole!r}: use {SPEC_FORMS_DATA}")


def parse_sources(spec: str) -> list[tuple[str, str | None, float]]:
    """The sources of a data spec with their shares (summing to 1): ``"sample+leaves@3"`` ->
    ``[("sample", None, 0.25), ("leaves", None, 0.75)]``; a single source has share 1 (and takes no weight)."""
    parts = _SPLIT.split(spec)
    if len(parts) == 1:
        return [(*_parse_one(spec, spec), 1.0)]
    out = []
    for part in parts:
        weight = 1.0
        m = (_DIR_WEIGHT if ":" in part else _WEIGHT).search(part)
        if m:
            try:
                weight = float(m.group(1))
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight > 0):
                raise DataError(f"bad data spec {spec!r}: weight {m.group(1)!r} of {part[:m.start()]} must be a "
                                "positive number")
            part = part[:m.start()]
        kind, arg = _parse_one(part, spec)
        if kind == "course":
            raise DataError(f"bad data spec {spec!r}: course data comes already noisy and cannot be mixed")
        out.append((kind, arg, weight))
    names = [f"{k}:{a}" if a else k for k, a, _ in out]
    if len(set(names)) < len(names):
        raise DataError(f"bad data spec {spec!r}: a source appears twice (give it a weight instead)")
    total = sum(w for _, _, w in out)
    return [(k, a, w / total) for k, a, w in out]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"course:DIR"`` -> ``("course", "DIR")``; ``"sample"`` -> ``("sample", None)``; a mixture such as
    ``"sample+leaves"`` -> ``("mixture", "sample+leaves")`` (its parts: :func:`parse_sources`)."""
    sources = parse_sources(spec)
    if len(sources) > 1:
        return "mixture", spec
    return sources[0][:2]


def shares(n: int, weights: list[float]) -> list[int]:
    """``n`` split in proportion to ``weights``, rounded so that the parts sum to exactly ``n`` (largest
    remainders get the leftover units, ties to the earlier source)."""
    exact = [n * w / sum(weights) for w in weights]
    out = [math.floor(x) for x in exact]
    for i in sorted(range(len(out)), key=lambda i: (out[i] - exact[i], i))[:n - sum(out)]:
        out[i] += 1
    return out


def check_source(spec: str) -> None:
    """The cheap part of a data source's checks (its files and folders exist), for when loading happens later."""
    for kind, arg, _ in parse_sources(spec):
        if kind == "course":
            for name in ("train_data.pkl", "val_data.pkl"):
                if not (Path(arg) / name).is_file():
                    raise DataError(f"{Path(arg) / name}: file not found")
        elif kind == "images" and not Path(arg).is_dir():
            raise DataError(not_a_folder(arg))
        elif kind == "pypi":
            pypi_photos()


# Photographs that other PyPI packages ship inside their wheels, none of them scikit-image's: ``pypi``, a second
# source of whole photos for measuring models trained on ``sample`` (docs/training.md). (import name, pip name, file)
PYPI_PHOTOS = (
    ("matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "scikit-learn", "datasets/images/china.jpg"),
    ("sklearn", "scikit-learn", "datasets/images/flower.jpg"),
    ("sporco", "sporco", "data/barbara.png"),
    ("sporco", "sporco", "data/kodim23.png"),
    ("sporco", "sporco", "data/monarch.png"),
    ("sporco", "sporco", "data/sail.png"),
    ("sporco", "sporco", "data/tulips.png"),
    ("mahotas", "mahotas", "demos/data/luispedro.jpg"),
)


def pypi_photos() -> list[Path]:
    """The files of ``PYPI_PHOTOS``, found in the installed packages' folders without importing them; all or none
    (a measurement on some of them would not compare with one on all), else a DataError naming what to install."""
    found, missing = [], []
    for module, pip_name, rel in PYPI_PHOTOS:
        spec = importlib.util.find_spec(module)
        where = list(spec.submodule_search_locations or []) if spec else []
        path = Path(where[0]) / rel if where else None
        if path is not None and path.is_file():
            found.append(path)
        elif pip_name not in missing:
            missing.append(pip_name)
    if missing:
        raise DataError(f"pypi: the photos of {', '.join(missing)} are not installed "
                        "(pip install 'n2n-tui[photos]')")
    return found


def not_a_folder(arg) -> str:
    """Why ``images:ARG`` cannot be read as a folder of photographs."""
    if Path(arg).exists():
        return f"{arg}: is a file, not a folder (images:DIR takes a folder of photographs)"
    return f"{arg}: no such directory"


def default_spec() -> str:
    """``course:./data`` when the course files are there, else the built-in ``sample``."""
    return "course:data" if Path("data/train_data.pkl").is_file() else "sample"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_problem(n: int, crop: int = CROP) -> str | None:
    """Why ``n`` generated pairs of ``crop`` px cannot be made here (too many, or more than the memory holds), or
    None."""
    if n > MAX_PAIRS:
        return f"at most {MAX_PAIRS:,} pairs can be generated, got {n:,}"
    need, avail = n * BYTES_PER_PAIR * (crop / CROP) ** 2, available_memory()
    if avail is not None and need > avail:
        return f"{n:,} pairs need about {need / 2**30:.1f} GiB of memory to generate, {avail / 2**30:.1f} GiB available"
    return None


def crop_problem(crop: int, generated: bool = True) -> str | None:
    """Why training crops of ``crop`` px cannot be made (course data is 32 px; others a multiple of 16, the
    4-level U-Net's, from 16 to ``MAX_CROP``), or None."""
    if not generated:
        return None if crop == CROP else f"course data comes in {CROP} px crops, not {crop}"
    if isinstance(crop, bool) or not isinstance(crop, int) or not 16 <= crop <= MAX_CROP or crop % 16:
        return f"the crop side must be a multiple of 16 from 16 to {MAX_CROP}, got {crop!r}"
    return None


# ---------------------------------------------------------------------------------------------------- noise specs

@dataclass(frozen=True)
class NoiseFamily:
    """A noise model as the options see it; ``engine.noise.NoiseModel`` adds the function that applies it."""
    name: str
    loss: str  # the loss the paper pairs with this noise: "l2", "l1" or "l0"
    help: str
    unit: str = ""                       # what NAME:LEVEL fixes ("" : no fixed form)
    limits: tuple[float, float] = (0.0, 0.0)
    integer: bool = False

    @property
    def form(self) -> str:
        lo, hi = (f"{v:g}" for v in self.limits)
        return f"{self.name}:{self.unit.upper()} ({lo}-{hi})"


FAMILIES: dict[str, NoiseFamily] = {f.name: f for f in (
    NoiseFamily("gaussian", "l2", "additive Gaussian, sigma 0-50 of 255", "sigma", (0.0, 255.0)),
    NoiseFamily("poisson", "l2", "Poisson shot noise, peak 5-50 photons", "photons", (0.1, 100000.0)),
    NoiseFamily("impulse", "l1", "random-valued impulse in 1-2 px blocks, 2-40% of pixels", "fraction", (0.0, 1.0)),
    NoiseFamily("pixelate", "l2", "block-average pixelation (2-4 px) with random phase", "block", (1, 16),
                integer=True),
    NoiseFamily("blocky", "l1", "pixelation plus scattered wrong-colour blocks (course-like)", "fraction", (0.0, 1.0)),
    NoiseFamily("mix", "l1", "a random model above and strength per image (blind default)"),
)}
SPEC_FORMS = ", ".join(f.form for f in FAMILIES.values() if f.unit)


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed ``--noise`` value: a model, and either a fixed level in the model's own unit or None (random)."""
    name: str
    level: float | None = None

    @property
    def family(self) -> NoiseFamily:
        return FAMILIES[self.name]

    def __str__(self) -> str:
        return self.name if self.level is None else f"{self.name}:{self.level:g}"


def parse_noise(spec: "str | NoiseSpec") -> NoiseSpec:
    """``"gaussian"`` -> random strength per image; ``"gaussian:25"`` -> sigma 25 of 255 for every image.
    Raises ValueError naming the accepted forms."""
    if isinstance(spec, NoiseSpec):
        return spec
    name, sep, value = str(spec).strip().partition(":")
    why = None
    if name not in FAMILIES:
        why = f"unknown noise {name!r}"
    elif sep:
        family = FAMILIES[name]
        try:
            level = float(value)
        except ValueError:
            level = None
        lo, hi = family.limits
        if not family.unit:
            why = f"{name} takes no level"
        elif level is None or not lo <= level <= hi or (family.integer and level != int(level)):
            kind = "a whole number" if family.integer else "a number"
            why = f"{name} level must be {kind} in {lo:g}-{hi:g}, got {value!r}"
        else:
            return NoiseSpec(name, level)
    else:
        return NoiseSpec(name)
    raise ValueError(f"bad noise {spec!r}: {why}; use one of {', '.join(FAMILIES)} (random strength per image) "
                     f"or NAME:LEVEL: {SPEC_FORMS}")
