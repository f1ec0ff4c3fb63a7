"""Reference marks: PSNR levels a user wants drawn on every PSNR plot (the dashboard's and the report's), beside the
lines every plot has (the noisy input's PSNR, the best so far). Given as ``--mark 24:"course 8-layer net"``
(repeatable) or kept in ``<runs>/marks.toml``::

    [[mark]]
    psnr = 24.0
    label = "course 8-layer net"
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import N2NError

FILE_NAME = "marks.toml"
MAX_LABEL = 60


class MarkError(N2NError, ValueError):
    """A mark that cannot be drawn; the message names it (and the file it came from)."""


@dataclass(frozen=True)
class Mark:
    psnr: float
    label: str


def _mark(psnr, label, where: str) -> Mark:
    if isinstance(psnr, bool) or not isinstance(psnr, (int, float)) or not math.isfinite(psnr) or not 0 < psnr < 100:
        raise MarkError(f"{where}: the PSNR must be a number of dB between 0 and 100, got {psnr!r}")
    if not isinstance(label, str):
        raise MarkError(f"{where}: the label must be text, got {label!r}")
    return Mark(float(psnr), " ".join(label.split())[:MAX_LABEL])


def parse_mark(text: str) -> Mark:
    """``"24:course 8-layer net"`` (or ``"24"``, no label) -> Mark; MarkError naming what is wrong."""
    value, _, label = str(text).partition(":")
    try:
        psnr = float(value)
    except ValueError:
        raise MarkError(f"--mark {text!r}: expected PSNR:LABEL, e.g. 24:\"course 8-layer net\"") from None
    return _mark(psnr, label, f"--mark {text!r}")


def load_marks(runs_dir: str | os.PathLike | None, given=()) -> list[Mark]:
    """The marks of ``<runs_dir>/marks.toml`` (when it exists), then the ``given`` ``--mark`` texts, by PSNR."""
    marks = []
    path = Path(runs_dir or "runs") / FILE_NAME
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise MarkError(f"{path}: not a readable marks file ({str(e).splitlines()[0]})") from None
        entries = raw.get("mark", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise MarkError(f"{path}: expected [[mark]] tables with psnr and label")
        for i, e in enumerate(entries, 1):
            marks.append(_mark(e.get("psnr"), e.get("label", ""), f"{path}, mark {i}"))
    marks += [parse_mark(t) for t in given or ()]
    return sorted(marks, key=lambda m: m.psnr)
