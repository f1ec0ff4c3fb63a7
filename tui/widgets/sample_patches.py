"""``SamplePatches``: a few validation images as noisy / denoised / clean, drawn with upper-half blocks.

Each character cell shows two pixels: ``▀`` with the foreground colour of the upper pixel and the background colour
of the lower one. Colours are true-colour RGB; on a 256-colour terminal Rich's colour system maps them down.
Patches are scaled (area-averaged down, nearest-neighbour up) to the largest square tile that fits the widget.
They come as torch tensors (a run in this process) or numpy arrays (a runner's socket, the store); both are drawn
with numpy, so a viewer never needs torch.
"""
from __future__ import annotations

import math

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from engine.patches import as_array

KINDS = ("noisy", "denoised", "clean")
H_GAP = 1        # columns between tiles
MIN_TILE = 4     # pixels


def choose_layout(width: int, height: int, n_samples: int, n_kinds: int = 3) -> tuple[int, int, int]:
    """Pick ``(shown, groups, tile)``: how many samples to show, how many sample groups side by side (each group is
    ``n_kinds`` tiles wide), and the tile side in pixels (even, as two pixel rows share a cell). Maximises the area
    shown; ties go to more samples. A header line of labels sits above each row of tiles."""
    best = (0, 1, 0)
    best_area = -1
    for shown in range(1, n_samples + 1):
        for groups in range(1, shown + 1):
            rows = math.ceil(shown / groups)
            cols = groups * n_kinds
            tw = (width - (cols - 1) * H_GAP - (groups - 1) * H_GAP) // cols
            th = 2 * ((height - rows) // rows)  # one label line per row of tiles
            tile = min(tw, th) // 2 * 2
            if tile < MIN_TILE:
                continue
            area = shown * tile * tile
            if area > best_area or (area == best_area and shown > best[0]):
                best, best_area = (shown, groups, tile), area
    return best


def _resize_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Resize one axis of a float array: area average when shrinking (output cell i averages input cells
    floor(i n / size) to ceil((i + 1) n / size), as adaptive average pooling does), nearest when enlarging."""
    n = x.shape[axis]
    i = np.arange(size)
    if size >= n:
        return np.take(x, i * n // size, axis=axis)
    start, end = i * n // size, -(-(i + 1) * n // size)
    shape = [1] * x.ndim
    shape[axis] = size
    c = np.cumsum(x, axis=axis)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    return (np.take(c, end, axis=axis) - np.take(c, start, axis=axis)) / (end - start).reshape(shape)


def resize(images, side: int) -> np.ndarray:
    """(K, 3, H, W) uint8 -> (K, side, side, 3) uint8: area average when shrinking, nearest when enlarging."""
    x = as_array(images).astype(np.float64)
    x = _resize_axis(_resize_axis(x, 2, side), 3, side)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


class SamplePatches(Widget):
    """Call ``show_samples(noisy, denoised, clean)`` with uint8 (K, 3, H, W) patches after each evaluation."""

    DEFAULT_CSS = """
    SamplePatches { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, placeholder: str = "samples appear after the first evaluation", **kwargs) -> None:
        super().__init__(**kwargs)
        self.placeholder = placeholder
        self._images: tuple[np.ndarray, ...] | None = None
        self._strips: list[Strip] = []
        self._built_for: tuple[int, int] | None = None
        self.layout_info: tuple[int, int, int] = (0, 1, 0)

    @property
    def has_samples(self) -> bool:
        return self._images is not None

    @property
    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The (noisy, denoised, clean) patches shown now, or None before the first evaluation."""
        return self._images

    def show_samples(self, noisy, denoised, clean) -> None:
        self._images = tuple(as_array(t) for t in (noisy, denoised, clean))
        self._built_for = None
        self.refresh()

    def on_resize(self) -> None:
        self._built_for = None

    def _build(self, size: Size) -> None:
        width, height = size
        self._built_for = (width, height)
        self._strips = []
        base = self.rich_style
        if self._images is None:
            text = self.placeholder[:width]
            pad = max(0, width - len(text))
            dim = base + Style(dim=True)
            line = Strip([Segment(" " * (pad // 2), base), Segment(text, dim), Segment(" " * (pad - pad // 2), base)])
            self._strips = [Strip.blank(width, base)] * (height // 2) + [line]
            return
        k = len(self._images[0])
        shown, groups, tile = choose_layout(width, height, k, len(KINDS))
        self.layout_info = (shown, groups, tile)
        if not shown:
            return
        # one resize for all kinds; then kind -> sample -> row -> col -> (r, g, b)
        stacked = resize(np.concatenate([t[:shown] for t in self._images]), tile).tolist()
        pix = [[[list(map(tuple, row)) for row in img] for img in stacked[j * shown:(j + 1) * shown]]
               for j in range(len(self._images))]
        colours: dict[tuple, Color] = {}
        styles: dict[tuple, Style] = {}

        def colour(rgb) -> Color:
            c = colours.get(rgb)
            if c is None:
                c = colours[rgb] = Color.from_rgb(*rgb)
            return c

        def cell(top, bottom) -> Style:
            key = (top, bottom)
            s = styles.get(key)
            if s is None:
                s = styles[key] = Style.from_color(colour(top), colour(bottom))
            return s

        gap = Segment(" " * H_GAP, base)
        for row in range(math.ceil(shown / groups)):
            samples = list(range(row * groups, min(shown, (row + 1) * groups)))
            label = []
            for g, _ in enumerate(samples):
                if g:
                    label.append(gap)
                for j, kind in enumerate(KINDS):
                    if j:
                        label.append(gap)
                    label.append(Segment(kind[:tile].center(tile), base + Style(bold=True)))
            self._strips.append(Strip(label))
            for y in range(0, tile, 2):
                segs = []
                for g, i in enumerate(samples):
                    if g:
                        segs.append(gap)
                    for j in range(len(KINDS)):
                        if j:
                            segs.append(gap)
                        top, bottom = pix[j][i][y], pix[j][i][y + 1]
                        segs.extend(Segment("▀", cell(a, b)) for a, b in zip(top, bottom))
                self._strips.append(Strip(Segment.simplify(segs)))

    def render_line(self, y: int) -> Strip:
        size = self.size
        if self._built_for != (size.width, size.height):
            self._build(size)
        strip = self._strips[y] if y < len(self._strips) else Strip.blank(size.width, self.rich_style)
        return strip.adjust_cell_length(size.width, self.rich_style)
